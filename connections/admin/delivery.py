"""The forwarding log (read-only, fast on millions of rows) and the pending forwards (superusers only)."""

from __future__ import annotations

import json
from datetime import datetime

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from connections.admin.common import CheapCountPaginator, ReadOnlyAdminMixin, report_count
from connections.models import BatchDelivery, Connection, Delivery, Forward
from connections.services.forwarding import retries
from connections.services.visibility import log_view

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
SECONDS = "Y-m-d H:i:s"
ERROR_SHOWN = 80  # characters of the error in the list
QUEUED = ngettext_lazy(
    "Queued %(count)d person to be sent again with their current state.",
    "Queued %(count)d people to be sent again with their current state.",
    "count",
)
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


class DeliveryChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's rows are read once (the template reuses them); their linked attempts in two more queries.
        log_view.attach_links(self.result_list)


class LogRowFields:
    """The columns and fields a log row of either kind shows: Delivery (one person) and BatchDelivery (a request)."""

    @admin.display(description=_("time"), ordering="created_at")
    def logged_at(self, obj: Delivery | BatchDelivery) -> str:
        return to_the_second(obj.created_at)

    @admin.display(description=_("HTTP"), ordering="http_status", empty_value="—")
    def http(self, obj: Delivery | BatchDelivery) -> int | None:
        return obj.http_status

    @admin.display(description=_("error"), empty_value="")
    def error_short(self, obj: Delivery | BatchDelivery) -> str:
        # Errors name no person or key (the client scrubs them); the whole text is on the row's page.
        return Truncator(obj.error).chars(ERROR_SHOWN)

    @admin.display(description=_("started"))
    def started(self, obj: Delivery | BatchDelivery) -> str:
        return to_the_second(obj.created_at)

    @admin.display(description=_("finished"))
    def finished(self, obj: Delivery | BatchDelivery) -> str:
        return to_the_second(obj.finished_at)

    @admin.display(description=_("response"))
    def response_text(self, obj: Delivery | BatchDelivery) -> SafeString | str:
        return format_html(PRE, obj.response) if obj.response else "—"

    @admin.display(description=_("error"))
    def error_text(self, obj: Delivery | BatchDelivery) -> SafeString | str:
        return format_html(PRE, obj.error) if obj.error else "—"


@admin.register(Delivery)
class DeliveryAdmin(LogRowFields, ReadOnlyAdminMixin, admin.ModelAdmin):
    # Fits 1366 px beside the filters: long values wrap, the error is cut short (whole on the row's page),
    # and attempt, duration and the request id are on the row's page.
    list_display = ("logged_at", "connection", "customer_id", "outcome", "http", "what", "error_short")
    list_filter = ("connection", "status", HttpStatusFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("connection",)
    search_fields = ("customer_id",)  # the search itself is log_view.search (get_search_results)
    search_help_text = _("A customer ID or its beginning, or a person's exact email address (any case).")
    ordering = ("-created_at",)
    sortable_by = ("logged_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice, over millions of rows
    paginator = CheapCountPaginator
    rows_plural = _("deliveries")  # "7 deliveries" under the list, not "7 forwarding log"
    actions = ("retry_selected",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "started",
                    "finished",
                    "connection",
                    "profile",
                    "customer_id",
                    "status",
                    "reason_label",
                    "transport_label",
                    "attempt",
                    "retry_time",
                    "duration_ms",
                    "request_id",
                )
            },
        ),
        (_("Attempts of this delivery"), {"fields": ("attempts",)}),
        (_("Sent"), {"fields": ("attributes_sent",)}),
        (_("Answer"), {"fields": ("http_status", "response_text", "error_text")}),
    )
    # The log is read-only: every field shown is a read-only one.
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def get_changelist(self, request: HttpRequest, **kwargs):  # type: ignore[no-untyped-def]
        return DeliveryChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        return log_view.search(queryset, search_term), False

    def get_urls(self):  # type: ignore[no-untyped-def]
        info = self.opts.app_label, self.opts.model_name
        retry = path(
            "<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view), name="{}_{}_retry".format(*info)
        )
        return [retry, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {"title": _("Forwarding log"), "time_zone": timezone.get_current_timezone_name()}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> HttpResponse:
        if obj is not None:
            # Who, where and how it ended: the model's own name only knows the connection's id.
            context["subtitle"] = f"{obj.customer_id or '—'} → {obj.connection.name}: {obj.get_status_display()}"
            context["can_retry"] = self._retryable(obj) and self.has_retry_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the list's columns ---

    @admin.display(description=_("status"), ordering="status")
    def outcome(self, obj: Delivery) -> SafeString:
        icon = STATUS_ICONS.get(obj.status, "icon-unknown.svg")
        status = format_html(
            '<span class="cio-status"><img src="{}" alt="" width="13" height="13"> {}</span>',
            static(f"admin/img/{icon}"),
            obj.get_status_display(),
        )
        links = format_html_join(
            "", '<span class="cio-attempt">{}</span>', ((link,) for link in self._attempt_links(obj))
        )
        return format_html("{}{}", status, links)

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

    def _attempt_links(self, obj: Delivery) -> list[SafeString]:
        """A row that did not get through links to its first later success, else to its next attempt; a retry
        links back to the attempt before it (log_view.with_links)."""
        later, following, previous = obj.later_success, obj.next_attempt, obj.previous_attempt  # type: ignore[attr-defined]
        links = []
        if later is not None:
            text = (
                _("Retried: delivered at %(time)s")
                if log_view.is_retry(later)
                else _("Newer update delivered at %(time)s")
            )
            links.append(self._link(text, later, later.finished_at or later.created_at, obj))
        elif following is not None:
            links.append(self._link(_("Tried again at %(time)s: %(status)s"), following, following.created_at, obj))
        if previous is not None:
            links.append(self._link(_("Retry of the attempt at %(time)s"), previous, previous.created_at, obj))
        return links

    def _link(self, text: str, target: Delivery, when: datetime, obj: Delivery) -> SafeString:
        """A link to another attempt, its time without the date when it is the row's own day."""
        same_day = timezone.localtime(when).date() == timezone.localtime(obj.created_at).date()
        label = text % {
            "time": to_the_second(when, "H:i:s" if same_day else SECONDS),
            "status": target.get_status_display().lower(),
        }
        return format_html('<a href="{}">{}</a>', self._change_url(target), label)

    def _change_url(self, delivery: Delivery) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change", args=[delivery.pk]
        )

    # --- the row's page ---

    @admin.display(description=_("retry at"))
    def retry_time(self, obj: Delivery) -> str:
        return to_the_second(obj.retry_at)

    @admin.display(description=_("attempts"))
    def attempts(self, obj: Delivery) -> SafeString:
        rows = log_view.attempts_of(obj)
        return render_to_string(
            "admin/connections/delivery/attempts.html",
            {"rows": [(row, self._change_url(row), to_the_second(row.created_at)) for row in rows], "current": obj},
        )

    @admin.display(description=_("reason"))
    def reason_label(self, obj: Delivery) -> str:
        return str(REASONS.get(obj.reason, obj.reason))

    @admin.display(description=_("transport"))
    def transport_label(self, obj: Delivery) -> str:
        return str(TRANSPORTS.get(obj.transport, obj.transport))

    @admin.display(description=_("attributes sent"))
    def attributes_sent(self, obj: Delivery) -> SafeString:
        return format_html(PRE, json.dumps(obj.attributes, indent=2, ensure_ascii=False, sort_keys=True))

    # --- retrying: the list's action and the row's button ---

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Those who manage subscriptions (marketers, superusers) may resend; log viewers only read.
        return request.user.has_perm("connections.change_subscription")

    @staticmethod
    def _retryable(obj: Delivery) -> bool:
        return obj.status in retries.RETRYABLE and obj.profile_id is not None

    @admin.action(description=_("Retry selected (failed or cancelled) deliveries"), permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        self._report_retry(request, retries.retry_deliveries(queryset))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        delivery = self.get_object(request, unquote(object_id))
        if delivery is None:
            raise Http404(_("No such delivery."))
        if not self.has_retry_permission(request):
            raise PermissionDenied
        self._report_retry(request, retries.retry_deliveries(Delivery.objects.filter(pk=delivery.pk)))
        return HttpResponseRedirect(self._change_url(delivery))

    def _report_retry(self, request: HttpRequest, queued: int) -> None:
        if queued:
            report_count(self, request, QUEUED, queued)
        else:
            self.message_user(
                request, _("Nothing to retry: only failed or cancelled deliveries are retried."), messages.WARNING
            )


def to_the_second(moment: datetime | None, format: str = SECONDS) -> str:
    """A time in the viewer's time zone (connections.middleware), to the second; "—" for none."""
    return dateformat.format(timezone.localtime(moment), format) if moment else "—"


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
