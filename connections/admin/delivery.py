"""The forwarding log (read-only, fast on millions of rows) and the pending forwards (superusers only)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from connections.admin.common import CheapCountPaginator, ReadOnlyAdminMixin
from connections.models import Connection, Delivery, Forward
from connections.services.forwarding import retries

REASONS = dict(Forward.Reason.choices)
TRANSPORTS = dict(Connection.Transport.choices)
STATUS_ICONS = {
    Delivery.Status.SUCCEEDED: "icon-yes.svg",
    Delivery.Status.FAILED: "icon-no.svg",
    Delivery.Status.RETRYING: "icon-clock.svg",
    Delivery.Status.PENDING: "icon-clock.svg",
    Delivery.Status.SKIPPED: "icon-alert.svg",
    Delivery.Status.CANCELLED: "icon-unknown.svg",
}
PRE = '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; margin: 0">{}</pre>'


class HttpStatusFilter(admin.SimpleListFilter):
    """The statuses Customer.io answers with, listed as constants: a DISTINCT over the log would be slow."""

    title = _("HTTP status")
    parameter_name = "http"
    NO_ANSWER = "none"
    COMMON = (
        (200, _("200 OK")),
        (207, _("207 Some of a batch failed")),
        (400, _("400 Bad request")),
        (401, _("401 Unauthorized")),
        (403, _("403 Forbidden")),
        (429, _("429 Too many requests")),
        (500, _("500 Server error")),
        (503, _("503 Unavailable")),
    )

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [(str(code), label) for code, label in self.COMMON] + [
            (self.NO_ANSWER, _("No answer (not sent, timeout, connection error)"))
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        if value == self.NO_ANSWER:
            return queryset.filter(http_status__isnull=True)
        if value and value.isdigit():
            return queryset.filter(http_status=int(value))
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Attempt, duration and the request id are on each row's page: the list must fit beside its filters.
    list_display = (
        "created_at",
        "connection",
        "customer_id",
        "outcome",
        "http_status",
        "what",
    )
    list_filter = ("connection", "status", HttpStatusFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("connection",)
    # Exact and case-sensitive, so the customer_id index serves it ("=customer_id" would be
    # iexact, which PostgreSQL cannot answer from that index).
    search_fields = ("customer_id__exact",)
    search_help_text = _("The exact customer ID.")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice, over millions of rows
    paginator = CheapCountPaginator
    actions = ("retry_selected",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "created_at",
                    "finished_at",
                    "connection",
                    "profile",
                    "customer_id",
                    "status",
                    "reason_label",
                    "transport_label",
                    "attempt",
                    "retry_at",
                    "duration_ms",
                    "request_id",
                )
            },
        ),
        (_("Sent"), {"fields": ("attributes_sent",)}),
        (_("Answer"), {"fields": ("http_status", "response_text", "error_text")}),
    )
    # The log is read-only: every field shown is a read-only one.
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": _("Forwarding log"), **(extra_context or {})})

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> HttpResponse:
        if obj is not None:
            # Who, where and how it ended: the model's own name only knows the connection's id.
            context["subtitle"] = f"{obj.customer_id or '—'} → {obj.connection.name}: {obj.get_status_display()}"
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description=_("status"), ordering="status")
    def outcome(self, obj: Delivery) -> SafeString:
        icon = STATUS_ICONS.get(obj.status, "icon-unknown.svg")
        return format_html(
            '<span style="white-space: nowrap"><img src="{}" alt="" width="13" height="13"'
            ' style="vertical-align: -2px"> {}</span>',
            static(f"admin/img/{icon}"),
            obj.get_status_display(),
        )

    @admin.display(description=_("reason"))
    def reason_label(self, obj: Delivery) -> str:
        return str(REASONS.get(obj.reason, obj.reason))

    @admin.display(description=_("request"))
    def what(self, obj: Delivery) -> str:
        """An identify says why it was sent; a segment or erasure request says what it did."""
        if obj.action == "segment_add":
            return str(_("add to segment %(id)s") % {"id": obj.segment_id})
        if obj.action == "segment_remove":
            return str(_("remove from segment %(id)s") % {"id": obj.segment_id})
        if obj.action in ("suppress", "delete"):
            return str(_("%(action)s the person (erasure)") % {"action": obj.action})
        return str(REASONS.get(obj.reason, obj.reason))

    @admin.display(description=_("transport"))
    def transport_label(self, obj: Delivery) -> str:
        return str(TRANSPORTS.get(obj.transport, obj.transport))

    @admin.display(description=_("attributes sent"))
    def attributes_sent(self, obj: Delivery) -> SafeString:
        return format_html(PRE, json.dumps(obj.attributes, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description=_("response"))
    def response_text(self, obj: Delivery) -> SafeString | str:
        return format_html(PRE, obj.response) if obj.response else "—"

    @admin.display(description=_("error"))
    def error_text(self, obj: Delivery) -> SafeString | str:
        return format_html(PRE, obj.error) if obj.error else "—"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Those who manage subscriptions (marketers, superusers) may resend; log viewers only read.
        return request.user.has_perm("connections.change_subscription")

    @admin.action(description=_("Retry selected (failed or cancelled) deliveries"), permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        queued = retries.retry_deliveries(queryset)
        if queued:
            message = ngettext(
                "Queued %(count)d person to be sent again with their current state.",
                "Queued %(count)d people to be sent again with their current state.",
                queued,
            )
            self.message_user(request, message % {"count": queued}, messages.SUCCESS)
        else:
            self.message_user(
                request, _("Nothing to retry: only failed or cancelled deliveries are retried."), messages.WARNING
            )


@admin.register(Forward)
class ForwardAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What is waiting to be sent: for administrators diagnosing a backlog."""

    list_display = ("created_at", "connection", "profile", "audience", "reason", "due_at", "attempts", "claimed_until")
    list_filter = ("connection", "reason")
    list_select_related = ("connection", "profile", "audience")
    search_fields = ("profile__customer_id__exact",)
    search_help_text = _("The exact customer ID.")
    sortable_by = ("created_at", "due_at")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CheapCountPaginator

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Forward | None = None) -> bool:
        return request.user.is_active and request.user.is_superuser
