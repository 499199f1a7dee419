"""Connections: Customer.io workspaces. The API key is write-only and never decrypted to render a page.

The change page shows the connection's health above the form (state, credentials, last success,
pending forwards, deliveries per hour for 48 hours, the latest resync), the audiences it forwards
with a toggle each (the subscription's own Activate and Deactivate… buttons, which come back here),
and buttons coloured by intent: Test credentials, Probe now, Resume (when not active) and Resync.
Saving checks the credentials with Customer.io once the save is committed
(`credentials.check_and_record`). The list shows state, recent failure rate and pending forwards,
computed for the page's rows only.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from connections.admin.charts import delivery_chart
from connections.admin.common import summarized_deleted_objects
from connections.admin.confirmation import confirmation_page, confirmed
from connections.admin.connection_form import (
    FORWARDING,
    HISTORY,
    IDENTIFIERS,
    MPARTICLE,
    WORKSPACE,
    ConnectionForm,
)
from connections.admin.connection_list import ConnectionChangeList, ConnectionListColumns
from connections.models import Connection, ResyncRun
from connections.services.connection import breaker, credentials
from connections.services.connection import transitions as connection_state
from connections.services.ingest import segments
from connections.services.resync import background_resync, estimates
from connections.services.resync import runs as resync
from connections.services.visibility import audience_view, figures
from connections.templatetags.cio import ago
from connections.templatetags.cio import until as time_until

# A change to any of these makes the stored credentials unverified until Customer.io accepts them.
CREDENTIAL_FIELDS = {"api_key", "site_id", "region"}

RESYNC_CONFIRMATION = "admin/connections/connection/resync_confirmation.html"


@admin.register(Connection)
class ConnectionAdmin(ConnectionListColumns, admin.ModelAdmin):
    form = ConnectionForm
    list_display = (
        "name",
        "state_badge",
        "recent_failure_rate",
        "backlog",
        "last_success",
        "region",
        "api_key_hint",
        "app_api_key_hint",
    )
    list_filter = ("state", "region", "transport")
    search_fields = ("name", "site_id")
    search_help_text = _("Part of the name or of the Site ID.")
    actions = ("test_credentials", "resume_connections", "resync_connections")
    change_form_template = "admin/connections/connection/change_form.html"
    change_list_template = "admin/connections/connection/change_list.html"

    @method_decorator(sensitive_post_parameters(*Connection.SECRET_FIELDS))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        # An error report of a failed save must not show the typed keys (SPEC §8).
        response = super().changeform_view(request, object_id, form_url, extra_context)
        # Customer.io is asked once the save is committed (Django's view saves in a transaction):
        # a slow answer must not hold the connection's row locked against the workers.
        saved = getattr(request, "_cio_saved_connection", None)
        if saved is not None:
            self._report_credentials(request, *saved)
        return response

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        # The ciphertexts are not even loaded: no page needs the keys (a new one is written
        # through the form, and a deferred column is left alone by save()).
        return super().get_queryset(request).defer(*Connection.SECRET_FIELDS)

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:  # type: ignore[no-untyped-def]
        return ConnectionChangeList

    def get_fieldsets(self, request: HttpRequest, obj: Connection | None = None):  # type: ignore[no-untyped-def]
        if obj is None:
            return (WORKSPACE, FORWARDING, IDENTIFIERS)
        # State, last error and last success are shown above the form, with the buttons that act on them.
        return (WORKSPACE, FORWARDING, IDENTIFIERS, MPARTICLE, HISTORY)

    def get_readonly_fields(self, request: HttpRequest, obj: Connection | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("connection_key", "created_at", "updated_at")

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        return summarized_deleted_objects(self, objs, request)

    # --- the list's columns ---

    def save_model(self, request: HttpRequest, obj: Connection, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        # Checked by changeform_view, after the commit.
        request._cio_saved_connection = (obj, not change or bool(CREDENTIAL_FIELDS & set(form.changed_data)))
        # Saved all the same: the marketer may be about to fix the other connection.
        for other in segments.segment_membership_conflicts(obj):
            self.message_user(
                request,
                _(
                    "%(name)s and %(other)s both write SegmentMembership to the Customer.io workspace with Site ID "
                    "%(site_id)s: each sends only its own audiences, so their values overwrite each other. Turn on "
                    "one attribute per audience (without SegmentMembership always) on one of them, or forward both "
                    "sets of audiences through one connection."
                )
                % {"name": obj.name, "other": other.name, "site_id": obj.site_id},
                messages.WARNING,
            )

    # --- list actions ---

    @admin.action(description=_("Test credentials of selected connections"), permissions=["change"])
    def test_credentials(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            self._report_credentials(request, connection)

    @admin.action(description=_("Resume selected faulted or backing-off connections"), permissions=["change"])
    def resume_connections(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        resumed = sum(connection_state.resume(c) for c in queryset.exclude(state=Connection.State.ACTIVE))
        if resumed:
            self.message_user(
                request,
                ngettext(
                    "Resumed %(count)d connection: its waiting forwards are being sent.",
                    "Resumed %(count)d connections: their waiting forwards are being sent.",
                    resumed,
                )
                % {"count": resumed},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, _("None of the selected connections was faulted or backing off."), messages.WARNING
            )

    @admin.action(
        description=_("Resync selected connections (sends every member's full state)…"), permissions=["change"]
    )
    def resync_connections(self, request: HttpRequest, queryset: QuerySet[Connection]) -> TemplateResponse | None:
        if not confirmed(request):
            return self._confirm_resync(request, list(queryset), action="resync_connections")
        for connection in queryset:
            self._start_resync(request, connection)
        return None

    # --- buttons on the change page ---

    def get_urls(self):  # type: ignore[no-untyped-def]
        info = self.opts.app_label, self.opts.model_name
        buttons = [
            ("test-credentials/", self.test_credentials_view, "test_credentials"),
            ("resume/", self.resume_view, "resume"),
            ("probe/", self.probe_view, "probe"),
        ]
        # POST only (and the admin's CSRF check): following a link or a prefetch changes nothing.
        return [
            *(
                path(
                    f"<path:object_id>/{route}",
                    self.admin_site.admin_view(require_POST(view)),
                    name="{}_{}_{}".format(*info, name),
                )
                for route, view, name in buttons
            ),
            # GET (or the button's POST) asks first; the confirmation's POST resyncs.
            path(
                "<path:object_id>/resync/",
                self.admin_site.admin_view(self.resync_view),
                name="{}_{}_resync".format(*info),
            ),
            *super().get_urls(),
        ]

    def test_credentials_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        connection = self._get_changeable(request, object_id)
        self._report_credentials(request, connection)
        return self._back_to(connection)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        connection = self._get_changeable(request, object_id)
        if connection_state.resume(connection):
            self.log_change(request, connection, str(_("Resumed.")))
            message = _("Resumed %(name)s: its waiting forwards are being sent.") % {"name": connection.name}
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(request, _("%(name)s was already active.") % {"name": connection.name}, messages.WARNING)
        return self._back_to(connection)

    def probe_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        connection = self._get_changeable(request, object_id)
        if breaker.probe_now(connection):
            message = _("%(name)s: a probe is being sent now; the page shows the outcome in a moment.")
            self.message_user(request, message % {"name": connection.name}, messages.SUCCESS)
        else:
            message = _("%(name)s is not backing off: there is nothing to probe.")
            self.message_user(request, message % {"name": connection.name}, messages.WARNING)
        return self._back_to(connection)

    def resync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        connection = self._get_changeable(request, object_id)
        if not confirmed(request):
            return self._confirm_resync(request, [connection])
        self._start_resync(request, connection)
        return self._back_to(connection)

    def _confirm_resync(
        self, request: HttpRequest, selected: list[Connection], *, action: str | None = None
    ) -> TemplateResponse:
        rows = []
        for connection in selected:
            estimate = estimates.resync(connection)
            notes = [estimates.how_sent(connection)]
            if not estimate.people:
                notes.append(str(_("no member in an active subscription: nothing is sent")))
            elif connection.state == Connection.State.FAULTED:
                notes.append(str(_("faulted: sent once it is resumed")))
            rows.append((connection, estimate, "; ".join(notes) + "."))
        total = estimates.Estimate(sum(e.people for _c, e, _n in rows), sum(e.requests for _c, e, _n in rows))
        title = ngettext("Resync %(name)s?", "Resync %(count)d connections?", len(rows)) % {
            "name": selected[0].name if selected else "",
            "count": len(rows),
        }
        return confirmation_page(
            self, request, RESYNC_CONFIRMATION, title=title, action=action, selected=selected, rows=rows, total=total
        )

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> TemplateResponse:
        if obj is not None and obj.pk is not None:
            progress = figures.latest_resync(obj.pk)
            context.update(
                last_success_ago=ago(obj.last_success_at),
                backlog=figures.backlog_of(obj.pk),
                state_since_ago=ago(obj.state_changed_at),
                next_probe_in=time_until(obj.next_probe_at),
                chart=delivery_chart(figures.deliveries_per_hour(obj.pk)),
                resync=progress,
                auto_refresh=progress is not None and progress.is_active,
                audiences=audience_view.connection_audiences(obj.pk),
                can_change_subscriptions=request.user.has_perm("connections.change_subscription"),
                can_add_subscriptions=request.user.has_perm("connections.add_subscription"),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- helpers ---

    def _get_changeable(self, request: HttpRequest, object_id: str) -> Connection:
        if not self.has_change_permission(request):
            raise PermissionDenied
        connection = self.get_object(request, unquote(object_id))
        if connection is None:
            raise Http404(_("No such connection."))
        if not self.has_change_permission(request, connection):
            raise PermissionDenied
        return connection

    def _back_to(self, connection: Connection) -> HttpResponseRedirect:
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[connection.pk])
        )

    def _report_credentials(self, request: HttpRequest, connection: Connection, credentials_changed=False) -> None:
        recorded = credentials.check_and_record(connection, credentials_changed=credentials_changed)
        check = recorded.check
        message = check.message.rstrip(".") + "."
        if check.valid:
            level = messages.WARNING if check.region_mismatch else messages.SUCCESS
            if recorded.resumed:
                message += " " + _("The connection was faulted: it is resumed and its waiting changes are being sent.")
        elif check.rejected:
            level = messages.ERROR
            message += " " + _(
                "Rejected: nothing is sent to this workspace (its changes wait, nothing is lost). Check the Site ID "
                "and the region, enter the Track API key again and save: it is checked again when you save."
            )
        else:
            level = messages.WARNING
            if connection.credential_status == "rejected":
                message += " " + _(
                    "It stays faulted until Customer.io accepts the credentials: press “Test credentials” once it "
                    "answers, or “Resume” to send with them now."
                )
            elif connection.credential_status == "not_verified":
                message += " " + _(
                    "Not verified: changes are sent as usual; the connection shows as verified once Customer.io "
                    "accepts the credentials (press “Test credentials” later, or wait for a delivery)."
                )
        self.message_user(request, f"{connection.name}: {message}", level)
        app_check = credentials.verify_app_api_key(connection)
        if app_check is not None:
            level = messages.SUCCESS if app_check.valid else messages.ERROR
            self.message_user(request, f"{connection.name}: {app_check.message}", level)

    def _start_resync(self, request: HttpRequest, connection: Connection) -> None:
        try:
            run, resumed = background_resync.request_resync(connection)
        except resync.ResyncError as error:
            self.message_user(request, str(error), messages.WARNING)
            return
        if run.status == ResyncRun.Status.INTERRUPTED:
            self.message_user(
                request,
                _(
                    "%(name)s: the resync could not be handed to a worker (the task queue is unavailable). "
                    "It is saved: press Resync again later, or run manage.py resync."
                )
                % {"name": connection.name},
                messages.ERROR,
            )
            return
        self.log_change(request, connection, str(_("Resync requested.")))
        if resumed:
            message = _(
                "%(name)s: resuming the unfinished resync from its checkpoint (%(queued)s of %(total)s profiles "
                "queued so far)."
            )
        else:
            message = _("%(name)s: resync started. %(total)s profiles are being queued and sent with their full state.")
        message %= {
            "name": connection.name,
            "queued": number_format(run.queued, force_grouping=True),
            "total": number_format(run.total, force_grouping=True),
        }
        if connection.state == Connection.State.FAULTED:
            message += " " + _("The connection is faulted: they are sent once it is resumed.")
        self.message_user(request, message, messages.SUCCESS)
