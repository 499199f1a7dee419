"""One person's forwarding history, newest first: the per-person log (changes) and their place in
the batch log's requests (whole-audience work), in one list. For the profile page; writes nothing.

Each entry says what was sent to this person, and how it ended for them: in a batch request that
is their own item's error when Customer.io rejected it, else the request's status.
Bounded queries whatever the history: the deliveries, the batch entries (the GIN index; the
person's item is cut out of the body in SQL), and the connections' names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.translation import gettext as _

from connections.models import BatchDelivery, Connection, Delivery, Forward, Profile
from connections.services.forwarding.batch_log import BatchEntry, BatchRef, batch_entries, batch_refs_for_profile

PER_PAGE = 10
RESPONSE_SHOWN = 300  # characters of the answer on the page; the whole one is on the row's page
REASONS = {**dict(Forward.Reason.choices), **dict(BatchDelivery.Reason.choices)}
STATUSES = {**dict(Delivery.Status.choices), **dict(BatchDelivery.Status.choices)}


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # "delivery" (the per-person log) or "batch" (a batch request)
    pk: int
    at: datetime
    connection_id: int
    connection_name: str
    action: str  # identify, segment_add, segment_remove, suppress, delete
    segment_id: int | None
    reason: str
    sent: Any  # what was sent for them: attributes, their identify action, their id in a segment request
    status: str  # how it ended for them
    error: str  # their item's error, or the request's
    http_status: int | None
    response: str
    people: int | None  # a batch request: how many people it named

    @property
    def status_label(self) -> str:
        return str(STATUSES.get(self.status, self.status))

    @property
    def reason_label(self) -> str:
        return str(REASONS.get(self.reason, self.reason))

    @property
    def people_shown(self) -> str:
        return f"{self.people:,}" if self.people is not None else ""

    @property
    def sent_fields(self) -> list[tuple[str, Any]]:
        """What was sent for them as (name, value) rows: the identifier first, then the attributes."""
        sent = self.sent
        if isinstance(sent, str):  # their id in a segment request
            return [("id", sent)]
        if not isinstance(sent, dict):
            return []
        if "identifiers" in sent or "attributes" in sent:  # a v2 identify action
            return [*dict(sent.get("identifiers") or {}).items(), *dict(sent.get("attributes") or {}).items()]
        return list(sent.items())  # a single update's attributes

    @property
    def what(self) -> str:
        if self.action == "segment_add":
            return _("add to segment %(id)s") % {"id": self.segment_id}
        if self.action == "segment_remove":
            return _("remove from segment %(id)s") % {"id": self.segment_id}
        if self.action in ("suppress", "delete"):
            return _("%(action)s the person (erasure)") % {"action": self.action}
        return _("identify")


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    page: int
    has_next: bool


def timeline(profile: Profile, page: int = 1, per_page: int = PER_PAGE) -> Timeline:
    """Page `page` of the person's history: the newest `page * per_page` keys of each log, merged by
    time; only the page's own batch entries have their item cut out of a body."""
    page = max(1, page)
    wanted = page * per_page
    deliveries = list(Delivery.objects.filter(profile=profile).order_by("-created_at", "-pk")[: wanted + 1])
    refs = batch_refs_for_profile(profile.pk, limit=wanted + 1)
    merged: list[tuple[datetime, Delivery | BatchRef]] = [(d.created_at, d) for d in deliveries[:wanted]]
    merged += [(ref.created_at, ref) for ref in refs[:wanted]]
    merged.sort(key=lambda pair: pair[0], reverse=True)
    shown = [item for _, item in merged[(page - 1) * per_page : wanted]]
    batch = {e.row.pk: e for e in batch_entries(profile.pk, [i for i in shown if isinstance(i, BatchRef)])}
    entries = [
        _from_delivery(i) if isinstance(i, Delivery) else _from_batch(batch[i.id])
        for i in shown
        if isinstance(i, Delivery) or i.id in batch  # a request pruned or scrubbed in between is left out
    ]
    names = dict(Connection.objects.filter(pk__in={e.connection_id for e in entries}).values_list("pk", "name"))
    has_next = len(merged) > wanted or len(deliveries) > wanted or len(refs) > wanted
    return Timeline(entries=[_named(e, names) for e in entries], page=page, has_next=has_next)


def _named(entry: TimelineEntry, names: dict[int, str]) -> TimelineEntry:
    return TimelineEntry(**{**entry.__dict__, "connection_name": names.get(entry.connection_id, "")})


def _from_delivery(d: Delivery) -> TimelineEntry:
    return TimelineEntry(
        kind="delivery",
        pk=d.pk,
        at=d.created_at,
        connection_id=d.connection_id,
        connection_name="",
        action=d.action,
        segment_id=d.segment_id,
        reason=d.reason,
        sent=d.attributes if d.action == "identify" else None,
        status=d.status,
        error=d.error,
        http_status=d.http_status,
        response=d.response[:RESPONSE_SHOWN],
        people=None,
    )


def _from_batch(entry: BatchEntry) -> TimelineEntry:
    row = entry.row
    return TimelineEntry(
        kind="batch",
        pk=row.pk,
        at=row.created_at,
        connection_id=row.connection_id,
        connection_name="",
        action=row.action,
        segment_id=row.segment_id,
        reason=row.reason,
        sent=entry.item,
        status=entry.outcome_for_person,
        error=entry.item_error or row.error,
        http_status=row.http_status,
        response=row.response[:RESPONSE_SHOWN],
        people=row.people,
    )
