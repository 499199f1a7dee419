"""Erasing a person: one service for the three entries (mParticle's DSR, the admin, `erase_person`).

    find the profiles (customer ID exact, email in any case)
      -> plan: per connection, suppress / delete / nothing, identified as the connection identifies
      -> in one transaction: an ErasureRecord (no personal data), the forwarding-log rows scrubbed,
         profiles deleted (memberships and outbox rows go with them), ErasureCall rows queued,
         suppressed identifiers remembered (hashed)
      -> on commit: a worker per connection sends the calls (erasure/calls.py)

A forward in flight is outlasted, so Customer.io's last word on the person is the erasure call.
A request naming a person goes out only after `forwarding.delivery_log.log_pending` wrote its row, which it
does only for a profile that still exists, locking it (FOR KEY SHARE) until the row commits; a
worker renews its lease on the person's outbox rows just before that. The erasure locks the
profiles, then the outbox rows (waiting for a claim or renewal under way). So either the worker
logs after the erasure (the person is gone: dropped from the request), or its row and lease were
committed first and the erasure reads that lease: each call is due a request timeout after the
later of the claim's lease end and now. A request begins within its lease (half a lease at
least is left after a renewal) and ends within CUSTOMERIO_TIMEOUT, so the call comes after it.
A streamed page (an activation's, a resync's) is fenced the same way: it marks its people in
flight before it locks them, and its mark's lease counts as a claim's (outbox/inflight.py).

Idempotent: a request id already recorded changes nothing, and a person already erased is not
found again. Stored Firehose messages keep only ids, types and answers (never a person), so
there is nothing of the person to remove from them; a test holds that true.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Replace
from django.utils import timezone

from connections.models import (
    Connection,
    ConnectionStateChange,
    Delivery,
    ErasureCall,
    ErasureRecord,
    Forward,
    Membership,
    Profile,
)
from connections.models import SuppressedIdentifier as Suppressed
from connections.scrubbing import scrubbed_forms
from connections.services.erasure import rules
from connections.services.outbox import inflight, wakeup


class ErasureError(ValueError):
    """The request cannot be carried out as given (no identifier, say); nothing was changed."""


@dataclass(frozen=True)
class PersonQuery:
    """Who to erase: a customer ID, an email, or given profiles (the admin); a profile matching any is erased."""

    customer_id: str = ""
    email: str = ""
    profile_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "customer_id", (self.customer_id or "").strip())
        object.__setattr__(self, "email", (self.email or "").strip())
        object.__setattr__(self, "profile_ids", tuple(self.profile_ids))
        if not self.customer_id and not self.email and not self.profile_ids:
            raise ErasureError("give a customer ID or an email to erase")

    @classmethod
    def for_profile(cls, profile: Profile) -> PersonQuery:
        """The person a profile is: it, and any other profile with its customer ID or email."""
        return cls(customer_id=profile.customer_id, email=profile.email, profile_ids=(profile.pk,))

    @property
    def matched_on(self) -> str:
        kinds = (("customer ID", self.customer_id), ("email", self.email), ("profile", self.profile_ids))
        return " + ".join(kind for kind, value in kinds if value)


@dataclass(frozen=True)
class PlannedCall:
    connection_id: int
    connection_name: str
    decision: rules.CallDecision

    def describe(self) -> str:
        """One line for the confirmation page and --dry-run (names the kind of identifier, not its value)."""
        if self.decision.skip:
            return f"{self.connection_name}: nothing sent ({self.decision.skip})"
        if self.decision.action == rules.SUPPRESS:
            what = "suppress (delete the person and keep them from being re-added)"
        else:
            what = "delete the person"
        kind = "customer ID" if self.decision.kind == rules.ID else "email"
        return f"{self.connection_name}: {what} in Customer.io, identified by {kind}"


@dataclass
class ErasurePlan:
    profile_ids: list[int] = field(default_factory=list)
    memberships: int = 0
    outbox_rows: int = 0
    deliveries: int = 0
    calls: list[PlannedCall] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.profile_ids or self.deliveries)


@dataclass
class ErasureResult:
    plan: ErasurePlan
    record: ErasureRecord | None  # None: nobody found, nothing recorded
    already_done: bool = False  # the request id was erased before: nothing changed now


def matching_profiles(query: PersonQuery) -> QuerySet[Profile]:
    match = Q(pk__in=query.profile_ids) if query.profile_ids else Q()
    if query.customer_id:
        match |= Q(customer_id=query.customer_id)
    if query.email:
        match |= Q(email__iexact=query.email)
    return Profile.objects.filter(match).order_by("pk")


def _personal_values(query: PersonQuery, profiles: list[Profile]) -> tuple[set[str], list[str]]:
    """(identifiers as the log's customer_id column may hold them, every value to scrub from texts)."""
    identifiers = {v for v in (query.customer_id, query.email) if v}
    for p in profiles:
        identifiers |= {v for v in (p.customer_id, p.email) if v}
    names = [v for p in profiles for v in (p.first_name, p.last_name) if v]
    return identifiers, [*identifiers, *names]


def _deliveries(profile_ids: list[int], identifiers: set[str]) -> QuerySet[Delivery]:
    return Delivery.objects.filter(Q(profile_id__in=profile_ids) | Q(customer_id__in=identifiers))


def plan_erasure(query: PersonQuery) -> ErasurePlan:
    """What an erasure of this person would do, changing nothing (the admin's page, --dry-run)."""
    profiles = list(matching_profiles(query))
    identifiers, _ = _personal_values(query, profiles)
    ids = [p.pk for p in profiles]
    plan = ErasurePlan(
        profile_ids=ids,
        memberships=Membership.objects.filter(profile_id__in=ids).count(),
        outbox_rows=sum(p.forwards.count() for p in profiles),
        deliveries=_deliveries(ids, identifiers).count(),
    )
    connections = list(Connection.objects.order_by("name"))
    for profile in profiles:
        person = rules.PersonIdentifiers(profile.customer_id, profile.email)
        for connection in connections:
            decision = rules.decide_call(connection.erasure, connection.identify_by, person)
            plan.calls.append(PlannedCall(connection.pk, connection.name, decision))
    return plan


def erase(
    query: PersonQuery,
    *,
    source: str,
    request_id: str = "",
    requested_by: str = "",
    regulation: str = "",
) -> ErasureResult:
    """Erase the person here and queue what each connection's Customer.io workspace is told."""
    request_id = request_id or str(uuid.uuid4())
    with transaction.atomic():
        done = ErasureRecord.objects.filter(source=source, request_id=request_id).first()
        if done is not None:
            return ErasureResult(plan=ErasurePlan(), record=done, already_done=True)
        # Locked, so two erasures of one person (or an erasure and a membership message) do not interleave.
        profiles = list(matching_profiles(query).select_for_update())
        plan = plan_erasure(query)
        if not plan.found:
            return ErasureResult(plan=plan, record=None)
        try:
            with transaction.atomic():
                record = ErasureRecord.objects.create(
                    source=source,
                    request_id=request_id,
                    requested_by=requested_by[:150],
                    regulation=regulation,
                    matched_on=query.matched_on,
                    profiles_erased=len(plan.profile_ids),
                    memberships_erased=plan.memberships,
                    deliveries_scrubbed=plan.deliveries,
                )
        except IntegrityError:  # the same request, erased by a concurrent copy just now
            return ErasureResult(plan=ErasurePlan(), record=None, already_done=True)
        identifiers, values = _personal_values(query, profiles)
        scrub_deliveries(_deliveries(plan.profile_ids, identifiers), values)
        _scrub_connection_texts(values)
        _scrub_admin_history(plan.profile_ids)
        fences = _claim_fences(plan.profile_ids)
        Profile.objects.filter(pk__in=plan.profile_ids).delete()  # memberships and outbox rows cascade
        _queue_calls(record, plan, fences)
    return ErasureResult(plan=plan, record=record)


def scrub_deliveries(deliveries: QuerySet[Delivery], values: list[str]) -> int:
    """Remove personal values from log rows: identifier, attributes, and any mention in texts.

    Rows of the same requests (a v2 batch holds many people; its answer may name any of them)
    have the values replaced in their response and error too.
    """
    rows = list(deliveries.values_list("pk", "request_id"))
    pks, request_ids = [pk for pk, _ in rows], {r for _, r in rows if r is not None}
    # By primary key from here: once scrubbed, the rows no longer match `deliveries`.
    scrubbed = Delivery.objects.filter(pk__in=pks).update(customer_id="", attributes={}, profile=None)
    scrub_texts(Delivery.objects.filter(Q(pk__in=pks) | Q(request_id__in=request_ids)), ("response", "error"), values)
    return scrubbed


def scrub_texts(rows: QuerySet[Any], fields: tuple[str, ...], values: list[str]) -> int:
    """Replace the values, in every encoding (raw, percent-encoded, JSON-escaped), in the rows'
    text fields: one UPDATE of the rows that hold any. Returns how many rows changed."""
    forms = scrubbed_forms(values)
    if not forms:
        return 0
    holding = Q()
    for name in fields:
        for form in forms:
            holding |= Q(**{f"{name}__contains": form})
    replaced = {}
    for name in fields:
        expression: Any = F(name)
        for form in forms:  # the longest first: it is the innermost Replace, applied first
            expression = Replace(expression, Value(form), Value(rules.ERASED))
        replaced[name] = expression
    return rows.filter(holding).update(**replaced)


def _scrub_connection_texts(values: list[str]) -> None:
    """Texts that quote Customer.io's errors: a connection's last error (the admin, alert emails), its
    state history, open erasure calls' errors (a finished call's was scrubbed when it ended). The
    client keeps identifiers out of them; this is the second line."""
    scrub_texts(Connection.objects.all(), ("last_error",), values)
    scrub_texts(ConnectionStateChange.objects.all(), ("reason",), values)
    open_calls = ErasureCall.objects.filter(status__in=(ErasureCall.Status.PENDING, ErasureCall.Status.RETRYING))
    scrub_texts(open_calls, ("error",), values)


def _scrub_admin_history(profile_ids: list[int]) -> None:
    """The admin's history names an edited object by its str() (a profile's is its customer ID)."""
    profile_type = ContentType.objects.get_for_model(Profile)
    LogEntry.objects.filter(content_type=profile_type, object_id__in=[str(pk) for pk in profile_ids]).update(
        object_repr=rules.ERASED
    )


def _claim_fences(profile_ids: list[int]) -> dict[int, datetime]:
    """Per connection whose worker holds a claim on the person: when their erasure call may go.

    The outbox rows are locked, so a claim or lease renewal under way is waited for and then seen
    (module docstring); a lease already run out still counts from now, for a slow worker's request.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.CUSTOMERIO_TIMEOUT)
    fences: dict[int, datetime] = {}
    rows = Forward.objects.filter(profile_id__in=profile_ids).select_for_update().order_by("pk")
    for connection_id, token, claimed_until in rows.values_list("connection_id", "claim_token", "claimed_until"):
        if token and claimed_until is not None:
            due = max(claimed_until, now) + grace
            fences[connection_id] = max(due, fences.get(connection_id, due))
    for connection_id, due in inflight.fences(profile_ids).items():  # a streamed page holding the person
        fences[connection_id] = max(due, fences.get(connection_id, due))
    return fences


def _queue_calls(record: ErasureRecord, plan: ErasurePlan, fences: dict[int, datetime]) -> None:
    calls, seen = [], set()
    for planned in plan.calls:
        decision = planned.decision
        key = (planned.connection_id, decision.kind, decision.identifier)
        if key in seen:  # two profiles of one person with the same identifier: one call
            continue
        seen.add(key)
        calls.append(
            ErasureCall(
                record=record,
                connection_id=planned.connection_id,
                connection_name=planned.connection_name,
                action=decision.action,
                status=ErasureCall.Status.SKIPPED if decision.skip else ErasureCall.Status.PENDING,
                identifier=decision.identifier,
                id_kind=decision.kind,
                error=decision.skip,
                due_at=None if decision.skip else fences.get(planned.connection_id, record.created_at),
            )
        )
        if decision.action == rules.SUPPRESS and not decision.skip:
            Suppressed.objects.get_or_create(
                connection_id=planned.connection_id,
                identifier_hash=rules.identifier_hash(decision.kind, decision.identifier),
                defaults={"record": record},
            )
    ErasureCall.objects.bulk_create(calls)
    to_wake = sorted({c.connection_id for c in calls if c.status == ErasureCall.Status.PENDING})
    if to_wake:
        # The forwarding task sends a connection's due erasure calls before its forwards; a call
        # held back by a claim in flight wakes it when due (the sweep finds it too).
        transaction.on_commit(lambda: [_wake(connection_id, fences.get(connection_id)) for connection_id in to_wake])


def _wake(connection_id: int, due: datetime | None) -> None:
    countdown = (due - timezone.now()).total_seconds() if due is not None else 0.0
    wakeup.forward_now(connection_id, countdown=countdown if countdown > 0 else None)
