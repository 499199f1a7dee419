"""Erasures in the admin: the "Erase person" action on profiles (with a confirmation page that says
what happens per connection), the read-only erasure records, and suppressed identifiers (delete one
to un-suppress it here)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from connections.admin.confirmation import confirmation_page, confirmed
from connections.firehose import inbox
from connections.models import ErasureCall, ErasureRecord, Profile, SuppressedIdentifier
from connections.services.erasure import local as erasure
from connections.services.erasure.rules import EMAIL, ID, identifier_hash

CONFIRMATION_TEMPLATE = "admin/connections/profile/erase_confirmation.html"


@admin.action(description=_("Erase selected people…"), permissions=["delete"])
def erase_people(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Profile]):  # type: ignore[no-untyped-def]
    """Confirm first (what each connection's Customer.io is told), then erase each person."""
    profiles = list(queryset.order_by("pk"))
    if not confirmed(request):
        plans = [(profile, erasure.plan_erasure(erasure.PersonQuery.for_profile(profile))) for profile in profiles]
        title = ngettext("Erase a person", "Erase %(count)d people", len(profiles)) % {"count": len(profiles)}
        return confirmation_page(
            modeladmin,
            request,
            CONFIRMATION_TEMPLATE,
            title=title,
            action="erase_people",
            selected=profiles,
            plans=plans,
        )
    # Messages accepted before this erasure and still waiting for a worker are applied first, for
    # a few seconds at most; past that the erasure waits behind them (FIREHOSE_APPLY=worker).
    done = inbox.erase_in_order(
        [erasure.PersonQuery.for_profile(profile) for profile in profiles],
        source=ErasureRecord.Source.ADMIN,
        requested_by=request.user.get_username(),
    )
    if done.queued:
        message = ngettext(
            "%(count)d person will be erased by a worker right after the %(waiting)d Firehose messages accepted "
            "before this request, which are still being applied; nothing of them is sent until then. "
            "Erasures lists the erasure once it is done.",
            "%(count)d people will be erased by a worker right after the %(waiting)d Firehose messages accepted "
            "before this request, which are still being applied; nothing of them is sent until then. "
            "Erasures lists the erasures once they are done.",
            len(done.queued),
        )
        modeladmin.message_user(
            request, message % {"count": len(done.queued), "waiting": done.waiting_before}, messages.WARNING
        )
        return None
    # Who asked is on the record (requested_by); the admin's history keeps nothing of the person.
    erased = sum(1 for result in done.erased if result.record is not None and not result.already_done)
    message = ngettext(
        "Erased %(count)d person. The Customer.io calls are sent by the workers; see Erasures for their outcome.",
        "Erased %(count)d people. The Customer.io calls are sent by the workers; see Erasures for their outcome.",
        erased,
    )
    modeladmin.message_user(request, message % {"count": erased}, messages.SUCCESS if erased else messages.WARNING)
    return None


class ErasureCallInline(admin.TabularInline):
    model = ErasureCall
    # Never the identifier: it is kept only until the call is done, and only for the worker.
    fields = ("connection_name", "action", "status", "attempts", "http_status", "error", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Customer.io, per connection")

    def has_add_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False


@admin.register(ErasureRecord)
class ErasureRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "source", "request_id", "regulation", "profiles_erased", "outcome")
    list_filter = ("source", "created_at")
    search_fields = ("request_id__exact",)
    search_help_text = _("An mParticle subject request id, or the id the admin or command gave the erasure.")
    inlines = (ErasureCallInline,)
    fields = (
        "request_id",
        "source",
        "requested_by",
        "regulation",
        "matched_on",
        "profiles_erased",
        "memberships_erased",
        "deliveries_scrubbed",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ErasureRecord]:
        return super().get_queryset(request).prefetch_related("calls")

    @admin.display(description=_("Customer.io"))
    def outcome(self, record: ErasureRecord) -> str:
        calls = list(record.calls.all())
        if not calls:
            return "—"
        counts: dict[str, int] = {}
        for call in calls:
            label = str(call.get_status_display())
            counts[label] = counts.get(label, 0) + 1
        return ", ".join(f"{label}: {count}" for label, count in sorted(counts.items()))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False


@admin.register(SuppressedIdentifier)
class SuppressedIdentifierAdmin(admin.ModelAdmin):
    """Identifiers a `suppress` erasure keeps from being forwarded again; deleting one un-suppresses it here."""

    list_display = ("connection", "identifier_hash", "record", "created_at")
    list_filter = ("connection",)
    search_fields = ("identifier_hash",)
    search_help_text = _("Type the customer ID or email exactly: it is hashed and looked up (the value is not stored).")
    readonly_fields = ("connection", "identifier_hash", "record", "created_at")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):  # type: ignore[no-untyped-def]
        term = search_term.strip()
        if not term:
            return queryset, False
        hashes = {identifier_hash(ID, term), identifier_hash(EMAIL, term), term.lower()}
        return queryset.filter(identifier_hash__in=hashes), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SuppressedIdentifier | None = None) -> bool:
        return False
