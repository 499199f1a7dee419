"""Audiences and their subscriptions. Every activation, deactivation, deletion and rename goes
through `connections.services.ingest.subscriptions`, so backfills happen and queued forwards are cancelled.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import number_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from connections.admin.common import FixedOnceSavedInline, PlainHelpTextForm, report_count, summarized_deleted_objects
from connections.admin.confirmation import confirmation_page, confirmed
from connections.models import Audience, Subscription
from connections.services.ingest import segments, subscriptions
from connections.services.resync import estimates
from connections.services.visibility import audience_view

ACTIVE = Subscription.Status.ACTIVE
INACTIVE = Subscription.Status.INACTIVE
ACTIVATED = ngettext_lazy(
    "Activated %(count)d subscription: the audience's current members are queued for sending.",
    "Activated %(count)d subscriptions: the audiences' current members are queued for sending.",
    "count",
)
DEACTIVATED = ngettext_lazy(
    "Deactivated %(count)d subscription. Nothing was sent: Customer.io keeps its attributes.",
    "Deactivated %(count)d subscriptions. Nothing was sent: Customer.io keeps its attributes.",
    "count",
)


def _become(row: Subscription, saved: Subscription) -> None:
    """Make the admin's unsaved `row` the subscription the service saved, as the admin expects after a save."""
    for name in ("pk", "status", "created_at", "updated_at"):
        setattr(row, name, getattr(saved, name))
    row._state.adding = False
    row._state.db = saved._state.db


def _segment_plan(subscription: Subscription) -> tuple[estimates.Estimate | None, str]:
    """What creating its manual segment would send, and how; None when the service would refuse it."""
    if subscription.customerio_segment_id:
        return None, str(_("Already uses manual segment %(id)s: nothing is created.")) % {
            "id": subscription.customerio_segment_id
        }
    if subscription.status != ACTIVE:
        return estimates.new_segment(subscription), str(
            _("Inactive: one request creates the segment; members are added once the subscription is activated.")
        )
    how = estimates.how_sent(subscription.connection)
    return estimates.new_segment(subscription), str(
        _("One request creates the segment; the members are sent (%(how)s) and added to it.")
    ) % {"how": how}


class SubscriptionInline(FixedOnceSavedInline):
    """New rows start active (with a backfill); status changes happen on each subscription's page."""

    model = Subscription
    fixed_fields = ("connection",)
    related = ("connection", "audience")
    fields = ("connection", "status", "updated_at")
    readonly_fields = ("status", "updated_at")
    show_change_link = True


class AudienceChangeList(ChangeList):
    """Adds members and ex-members to the page's rows: one grouped query over those audiences only."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        counts = audience_view.member_counts(row.pk for row in rows)
        for row in rows:
            row.member_counts = counts.get(row.pk, audience_view.MemberCounts())
        self.result_list = rows


@admin.register(Audience)
class AudienceAdmin(admin.ModelAdmin):
    form = PlainHelpTextForm
    ordering = ("name",)  # get_queryset's annotation drops the model's default ordering
    list_display = ("name", "audience_id", "members", "ex_members", "active_subscriptions", "updated_at")
    change_form_template = "admin/connections/audience/change_form.html"

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:  # type: ignore[no-untyped-def]
        return AudienceChangeList

    @admin.display(description=_("members"))
    def members(self, obj: Audience) -> str:
        return number_format(obj.member_counts.members, force_grouping=True)  # type: ignore[attr-defined]

    @admin.display(description=_("ex-members"))
    def ex_members(self, obj: Audience) -> str:
        return number_format(obj.member_counts.ex_members, force_grouping=True)  # type: ignore[attr-defined]

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> TemplateResponse:
        if obj is not None and obj.pk is not None:
            # Members, ex-members and where the audience goes, above the form.
            context.update(
                audience_counts=audience_view.member_counts([obj.pk]).get(obj.pk, audience_view.MemberCounts()),
                audience_subscriptions=audience_view.subscriptions(obj),
                window=audience_view.LAST_FORWARD_WINDOW,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)
    search_fields = ("name", "audience_id__exact")
    search_help_text = _("Part of the name, or the exact audience ID.")
    inlines = (SubscriptionInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Audience]:
        return (
            super()
            .get_queryset(request)
            .annotate(active_subscription_count=Count("subscriptions", filter=Q(subscriptions__status=ACTIVE)))
        )

    def get_fields(self, request: HttpRequest, obj: Audience | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("audience_id", "name")
        return ("audience_id", "name", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Audience | None = None) -> tuple[str, ...]:
        # The audience ID is what Customer.io's SegmentMembership lists: it is the source
        # system's, not ours to change.
        return () if obj is None else ("audience_id", "created_at", "updated_at")

    @admin.display(description=_("active subscriptions"), ordering="active_subscription_count")
    def active_subscriptions(self, obj: Audience) -> int:
        return obj.active_subscription_count  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Audience, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if not change:
            obj.save()
            return
        # A rename re-sends current members under the new name where the toggle is on.
        new_name = obj.name
        obj.name = form.initial["name"]
        subscriptions.rename_audience(obj, new_name)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # type: ignore[no-untyped-def]
        if formset.model is not Subscription:
            super().save_formset(request, form, formset, change)
            return
        # Existing rows cannot change (connection fixed, status read-only): only additions and deletions.
        new_rows = formset.save(commit=False)
        subscriptions.delete_subscriptions(formset.deleted_objects)
        for row in new_rows:
            saved, _created = subscriptions.subscribe(row.audience, row.connection)
            _become(row, saved)

    def delete_model(self, request: HttpRequest, obj: Audience) -> None:
        subscriptions.delete_audiences([obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Audience]) -> None:
        subscriptions.delete_audiences(queryset.values_list("pk", flat=True))

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        return summarized_deleted_objects(self, objs, request)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = PlainHelpTextForm
    list_display = ("audience", "connection", "status", "manual_segment", "updated_at")
    list_filter = ("status", "connection")
    list_select_related = ("audience", "connection")
    search_fields = ("audience__name", "audience__audience_id__exact")
    search_help_text = _("Part of the audience name, or the exact audience ID.")
    autocomplete_fields = ("audience",)
    actions = ("activate_subscriptions", "deactivate_subscriptions", "create_manual_segments")
    deactivate_confirmation_template = "admin/connections/subscription/deactivate_confirmation.html"
    segment_confirmation_template = "admin/connections/subscription/segment_confirmation.html"

    def get_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("audience", "connection", "status", "customerio_segment_id")
        return ("audience", "connection", "status", "customerio_segment_id", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        # Status changes only through the actions and buttons, which backfill or cancel.
        if obj is None:
            return ("status",)
        return ("audience", "connection", "status", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Subscription, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        # Only the segment id is editable on a saved subscription; status changes through the buttons.
        segment_id = form.cleaned_data.get("customerio_segment_id")
        if not change:
            saved, _created = subscriptions.subscribe(obj.audience, obj.connection)
            _become(obj, saved)
        segments.set_segment_id(obj, segment_id)

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        subscriptions.delete_subscriptions([obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        subscriptions.delete_subscriptions(queryset)

    # --- Activation and deactivation: list actions ---

    @admin.action(description=_("Activate selected subscriptions (sends current members)"), permissions=["change"])
    def activate_subscriptions(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        changed = self._set_status(request, queryset, ACTIVE)
        self._report(request, changed, ACTIVE)

    @admin.action(description=_("Deactivate selected subscriptions…"), permissions=["change"])
    def deactivate_subscriptions(
        self, request: HttpRequest, queryset: QuerySet[Subscription]
    ) -> TemplateResponse | None:
        if not confirmed(request):
            return self._confirm_deactivation(request, list(queryset.select_related("audience", "connection")))
        changed = self._set_status(request, queryset, INACTIVE)
        self._report(request, changed, INACTIVE)
        return None

    @admin.display(description=_("segment ID"), ordering="customerio_segment_id", empty_value="—")
    def manual_segment(self, obj: Subscription) -> int | None:
        # A short header: the model field's name is too long for a list column.
        return obj.customerio_segment_id

    @admin.action(description=_("Create a manual segment in Customer.io…"), permissions=["change"])
    def create_manual_segments(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> TemplateResponse | None:
        selected = list(queryset.select_related("audience", "connection"))
        if not confirmed(request):
            rows = [(s, *_segment_plan(s)) for s in selected]
            sent = [e for _s, e, _n in rows if e is not None]
            return confirmation_page(
                self,
                request,
                self.segment_confirmation_template,
                title=_("Create manual segments in Customer.io?"),
                action="create_manual_segments",
                selected=selected,
                rows=rows,
                total=estimates.Estimate(sum(e.people for e in sent), sum(e.requests for e in sent)),
            )
        for subscription in selected:
            try:
                segment_id = segments.create_manual_segment(subscription)
            except segments.SegmentError as error:
                self.message_user(request, str(error), messages.ERROR)
                continue
            self.log_change(request, subscription, str(_("Created manual segment %(id)s.") % {"id": segment_id}))
            message = _(
                "Created the manual segment “%(segment)s” (ID %(id)s) in %(connection)s's Customer.io workspace "
                "and stored its ID on the subscription."
            ) % {
                "segment": segments.segment_name(subscription),
                "id": segment_id,
                "connection": subscription.connection,
            }
            if subscription.status == ACTIVE:
                message += " " + str(_("The audience's current members are queued to be added to it."))
            self.message_user(request, message, messages.SUCCESS)
        return None

    # --- Activation and deactivation: buttons on the subscription's page ---

    def get_urls(self):  # type: ignore[no-untyped-def]
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/activate/",
                self.admin_site.admin_view(self.activate_view),
                name="{}_{}_activate".format(*info),
            ),
            path(
                "<path:object_id>/deactivate/",
                self.admin_site.admin_view(self.deactivate_view),
                name="{}_{}_deactivate".format(*info),
            ),
            *super().get_urls(),
        ]

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        subscription = self._get_changeable(request, object_id)
        self._report(request, self._set_status(request, [subscription], ACTIVE), ACTIVE)
        return HttpResponseRedirect(self._back_url(request, subscription))

    def deactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        subscription = self._get_changeable(request, object_id)
        if not confirmed(request):
            return self._confirm_deactivation(request, [subscription], from_changelist=False)
        self._report(request, self._set_status(request, [subscription], INACTIVE), INACTIVE)
        return HttpResponseRedirect(self._back_url(request, subscription))

    # --- helpers ---

    def _get_changeable(self, request: HttpRequest, object_id: str) -> Subscription:
        subscription = self.get_object(request, unquote(object_id))
        if subscription is None:
            raise Http404(_("No such subscription."))
        if not self.has_change_permission(request, subscription):
            raise PermissionDenied
        return subscription

    def _change_url(self, subscription: Subscription) -> str:
        opts = self.opts
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
            args=[subscription.pk],
        )

    def _back_url(self, request: HttpRequest, subscription: Subscription) -> str:
        """Where a button sends the person back: the page it was pressed on (a connection's), else the subscription."""
        back = request.POST.get("next", "")
        hosts = {request.get_host()}
        safe = url_has_allowed_host_and_scheme(back, allowed_hosts=hosts, require_https=request.is_secure())
        return back if back and safe else self._change_url(subscription)

    def _set_status(self, request: HttpRequest, selected, status: str) -> int:  # type: ignore[no-untyped-def]
        to_change = [s for s in selected if s.status != status]
        changed = subscriptions.set_status(to_change, status)
        what = _("Activated.") if status == ACTIVE else _("Deactivated (nothing sent to Customer.io).")
        for subscription in to_change:
            self.log_change(request, subscription, str(what))
        return changed

    def _report(self, request: HttpRequest, changed: int, status: str) -> None:
        if not changed:
            already = _("already active") if status == ACTIVE else _("already inactive")
            self.message_user(request, _("Nothing changed: the subscriptions were %s.") % already, messages.WARNING)
        else:
            report_count(self, request, ACTIVATED if status == ACTIVE else DEACTIVATED, changed)

    def _confirm_deactivation(
        self, request: HttpRequest, selected: list[Subscription], *, from_changelist: bool = True
    ) -> TemplateResponse:
        return confirmation_page(
            self,
            request,
            self.deactivate_confirmation_template,
            title=_("Deactivate subscriptions?"),
            action="deactivate_subscriptions" if from_changelist else None,
            selected=selected,
            subscriptions=selected,
            next="" if from_changelist else self._back_url(request, selected[0]),
        )
