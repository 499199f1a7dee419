"""The batch log in the admin: one row per request of whole-audience work, read-only.

A person's part of these requests is on their profile page (profile_ids through the GIN index);
this list is for the requests themselves: which went, how they ended, what Customer.io answered.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from connections.admin.common import CheapCountPaginator, ReadOnlyAdminMixin
from connections.admin.delivery import PRE, HttpStatusFilter, LogRowFields
from connections.models import BatchDelivery

STATUS_ICONS = {
    BatchDelivery.Status.SUCCEEDED: "icon-yes.svg",
    BatchDelivery.Status.PARTIAL: "icon-alert.svg",
    BatchDelivery.Status.FAILED: "icon-no.svg",
    BatchDelivery.Status.RETRYING: "icon-clock.svg",
    BatchDelivery.Status.PENDING: "icon-clock.svg",
}
BODY_ITEMS_SHOWN = 20  # of up to 1,000: enough to see what the request held, a page that stays light
ITEM_ERRORS_SHOWN = 50


class BatchChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters=None):  # type: ignore[no-untyped-def]
        # The list never reads the 100-300 KB bodies, nor the 1,000 ids and the item errors of each row.
        return super().get_queryset(request, exclude_parameters).defer("body", "profile_ids", "item_errors")


@admin.register(BatchDelivery)
class BatchDeliveryAdmin(LogRowFields, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("logged_at", "connection", "what", "people_count", "outcome", "http", "error_short")
    list_filter = (
        "connection",
        "status",
        "reason",
        HttpStatusFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("connection",)
    ordering = ("-created_at", "-id")
    sortable_by = ("logged_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CheapCountPaginator
    list_per_page = 50
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "started",
                    "finished",
                    "connection",
                    "run_label",
                    "status",
                    "reason",
                    "request_label",
                    "people_count",
                    "attempt",
                    "duration_ms",
                )
            },
        ),
        (_("Answer"), {"fields": ("http_status", "response_text", "error_text", "rejected_items")}),
        (_("Sent"), {"fields": ("body_shown",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def get_queryset(self, request: HttpRequest) -> QuerySet[BatchDelivery]:
        return super().get_queryset(request).defer("connection__api_key", "connection__app_api_key")

    def get_changelist(self, request: HttpRequest, **kwargs):  # type: ignore[no-untyped-def]
        return BatchChangeList

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {
            "title": _("Forwarding log: batch requests"),
            "time_zone": timezone.get_current_timezone_name(),
            "log_url": reverse("admin:connections_delivery_changelist"),
        }
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> HttpResponse:
        if obj is not None:
            context["subtitle"] = (
                f"{self.what(obj)} ({obj.people:,} people) → {obj.connection.name}: {obj.get_status_display()}"
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the list's columns ---

    @admin.display(description=_("request"))
    def what(self, obj: BatchDelivery) -> str:
        reason = obj.get_reason_display()
        if obj.action == BatchDelivery.Action.SEGMENT_ADD:
            return str(_("%(reason)s: add to segment %(id)s") % {"reason": reason, "id": obj.segment_id})
        if obj.action == BatchDelivery.Action.SEGMENT_REMOVE:
            return str(_("%(reason)s: remove from segment %(id)s") % {"reason": reason, "id": obj.segment_id})
        return str(_("%(reason)s: identify") % {"reason": reason})

    @admin.display(description=_("status"), ordering="status")
    def outcome(self, obj: BatchDelivery) -> SafeString:
        icon = STATUS_ICONS.get(obj.status, "icon-unknown.svg")
        return format_html(
            '<span class="cio-status"><img src="{}" alt="" width="13" height="13"> {}</span>',
            static(f"admin/img/{icon}"),
            obj.get_status_display(),
        )

    @admin.display(description=_("people"))
    def people_count(self, obj: BatchDelivery) -> str:
        return f"{obj.people:,}"

    # --- the row's page ---

    @admin.display(description=_("run"))
    def run_label(self, obj: BatchDelivery) -> str:
        return f"#{obj.run_id}" if obj.run_id else "—"

    @admin.display(description=_("request"))
    def request_label(self, obj: BatchDelivery) -> str:
        return f"{self.what(obj)} ({obj.transport})"

    @admin.display(description=_("rejected items"))
    def rejected_items(self, obj: BatchDelivery) -> SafeString | str:
        """Customer.io's error per rejected item, by its position in the request (0 is the first)."""
        errors = sorted((obj.item_errors or {}).items(), key=lambda item: int(item[0]))
        if not errors:
            return "—"
        lines = [f"#{position}: {text}" for position, text in errors[:ITEM_ERRORS_SHOWN]]
        if len(errors) > ITEM_ERRORS_SHOWN:
            lines.append(str(_("… and %(count)d more") % {"count": len(errors) - ITEM_ERRORS_SHOWN}))
        return format_html(PRE, "\n".join(lines))

    @admin.display(description=_("body"))
    def body_shown(self, obj: BatchDelivery) -> SafeString:
        """The JSON POSTed, pretty-printed, its first BODY_ITEMS_SHOWN items (of up to 1,000)."""
        body = json.loads(bytes(obj.body))
        key = "batch" if obj.action == BatchDelivery.Action.IDENTIFY else "ids"
        items = body.get(key, [])
        shown = {**body, key: items[:BODY_ITEMS_SHOWN]}
        text = json.dumps(shown, indent=2, ensure_ascii=False)
        if len(items) > BODY_ITEMS_SHOWN:
            more = _(
                "The first %(shown)d of %(total)s items (%(size)s bytes sent); each person's own is on their page."
            )
            note = more % {"shown": BODY_ITEMS_SHOWN, "total": f"{len(items):,}", "size": f"{len(bytes(obj.body)):,}"}
            return format_html(
                '<div><p class="help" style="margin: 0 0 6px; padding: 0">{}</p>' + PRE + "</div>", note, text
            )
        return format_html(PRE, text)
