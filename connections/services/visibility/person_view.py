"""What Customer.io was confirmed to receive for one person, and what it receives next, per connection.

For the profile page; writes nothing.

- **Last delivered** comes from the forwarding log: the latest identify Customer.io answered with
  success (the only state the page may say Customer.io has), and the latest identify attempt when it
  came after that one and did not succeed (a 400, a retry, a skip), so a failure is never shown as
  delivered.
- **Next update** is computed by `payloads.plan`, the code the worker runs, with one audience-less
  claimed row (the person's full state, as a resync sends it), and the outbox says whether a change
  waits to be sent.

Queries stay bounded whatever the person's history: one for the connections with their latest log
rows' ids, one for those rows, one for the outbox, one for audience names, three for the history
(person_timeline.py), and `plan`'s few per connection the person is forwarded to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet, Subquery

from connections.customerio.limits import AttributeValue
from connections.models import Audience, Connection, Delivery, Forward, Profile, Subscription
from connections.services.forwarding.attributes import SEGMENT_MEMBERSHIP_ATTRIBUTE
from connections.services.forwarding.payloads import ClaimedRow, Planned, plan
from connections.services.visibility import person_timeline

IDENTIFY = "identify"
_AUDIENCE_ID = re.compile(r"'(\d+)'")


@dataclass(frozen=True)
class Attribute:
    name: str
    value: AttributeValue
    was: AttributeValue | None = None  # next update only: the value last delivered, when it differs
    audiences: tuple[tuple[int, str], ...] = ()  # SegmentMembership: each audience id with its name here


@dataclass(frozen=True)
class Queued:
    """The person's changes waiting in the outbox for one connection."""

    since: datetime  # the oldest one
    due_at: datetime  # not sent before then (a retry's backoff)
    attempts: int  # failed attempts so far
    sending: bool  # a worker holds them now


@dataclass(frozen=True)
class ConnectionView:
    connection: Connection
    delivered: Delivery | None  # the latest identify Customer.io confirmed
    delivered_attributes: list[Attribute]
    attempt: Delivery | None  # the latest identify attempt, when it came after `delivered` and did not succeed
    planned: Planned | None  # None: not forwarded there any more (no active subscription)
    next_attributes: list[Attribute]
    queued: Queued | None

    @property
    def next_state(self) -> str:
        """queued, up_to_date, not_forwarded, not_sendable or undelivered (nothing waits, yet Customer.io lacks it)."""
        if self.queued is not None:
            return "queued"
        if self.planned is None:
            return "not_forwarded"
        if not self.planned.sendable:
            return "not_sendable"
        if self.delivered is None or self.attempt is not None:
            return "undelivered"
        return "up_to_date"


@dataclass(frozen=True)
class PersonView:
    connections: list[ConnectionView]
    history: person_timeline.Timeline  # what was sent to them, per-person log and batch requests, newest first


def _latest_identify(profile: Profile, **filters: object) -> Subquery:
    rows = Delivery.objects.filter(connection=OuterRef("pk"), profile=profile, action=IDENTIFY, **filters)
    return Subquery(rows.order_by("-created_at", "-pk").values("pk")[:1])


def shown_connections(profile: Profile) -> QuerySet[Connection]:
    """Connections the person is forwarded to, was ever sent to, or has changes waiting for; with the ids of the
    latest identify attempt and the latest success there (`attempt_id`, `delivered_id`)."""
    forwarded = Subscription.objects.filter(
        connection=OuterRef("pk"), status=Subscription.Status.ACTIVE, audience__memberships__profile=profile
    )
    return (
        Connection.objects.defer(*Connection.SECRET_FIELDS)
        .annotate(
            forwarded=Exists(forwarded),
            queued=Exists(Forward.objects.filter(connection=OuterRef("pk"), profile=profile)),
            attempt_id=_latest_identify(profile),
            delivered_id=_latest_identify(profile, status=Delivery.Status.SUCCEEDED),
        )
        .filter(Q(forwarded=True) | Q(queued=True) | Q(attempt_id__isnull=False))
        .order_by("name", "pk")
    )


def _queued(profile: Profile) -> dict[int, Queued]:
    rows = (
        Forward.objects.filter(profile=profile)
        .values("connection_id")
        .annotate(
            since=Min("created_at"),
            due_at=Min("due_at"),
            attempts=Max("attempts"),
            held=Count("pk", filter=~Q(claim_token="")),
        )
        .order_by()
    )
    return {
        row["connection_id"]: Queued(row["since"], row["due_at"], row["attempts"], row["held"] > 0) for row in rows
    }


def _audience_ids(attributes: dict[str, AttributeValue]) -> list[int]:
    value = attributes.get(SEGMENT_MEMBERSHIP_ATTRIBUTE)
    return [int(found) for found in _AUDIENCE_ID.findall(value)] if isinstance(value, str) else []


def _in_order(attributes: dict[str, AttributeValue], order: list[str]) -> dict[str, AttributeValue]:
    """`attributes` in the order of `order` (the plan's: identity, audiences, SegmentMembership), others after by
    name: the log's JSON column does not keep the order they were sent in."""
    rank = {name: n for n, name in enumerate(order)}
    return dict(sorted(attributes.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def _rows(
    attributes: dict[str, AttributeValue], names: dict[int, str], before: dict[str, AttributeValue] | None = None
) -> list[Attribute]:
    rows = []
    for name, value in attributes.items():
        was = before[name] if before is not None and name in before and before[name] != value else None
        audiences = tuple((audience_id, names.get(audience_id, "")) for audience_id in _audience_ids({name: value}))
        rows.append(Attribute(name, value, was, audiences))
    return rows


def build(profile: Profile, history_page: int = 1) -> PersonView:
    connections = list(shown_connections(profile))
    log_ids = {c.attempt_id for c in connections} | {c.delivered_id for c in connections}  # type: ignore[attr-defined]
    log_ids.discard(None)
    log = Delivery.objects.in_bulk(log_ids) if log_ids else {}
    queued = _queued(profile) if any(c.queued for c in connections) else {}  # type: ignore[attr-defined]
    plans: dict[int, Planned] = {}
    for connection in connections:
        if connection.forwarded:  # type: ignore[attr-defined]
            row = ClaimedRow(id=0, profile_id=profile.pk, audience_id=None, reason=Forward.Reason.RESYNC, attempts=0)
            [plans[connection.pk]] = plan(connection, [row])

    shown_attributes = [d.attributes for d in log.values()] + [p.attributes for p in plans.values()]
    ids = {audience_id for attributes in shown_attributes for audience_id in _audience_ids(attributes)}
    names = dict(Audience.objects.filter(audience_id__in=ids).values_list("audience_id", "name")) if ids else {}

    views = []
    for connection in connections:
        delivered = log.get(connection.delivered_id)  # type: ignore[attr-defined]
        attempt = log.get(connection.attempt_id)  # type: ignore[attr-defined]
        planned = plans.get(connection.pk)
        sent = delivered.attributes if delivered else {}
        upcoming = planned.attributes if planned else {}
        views.append(
            ConnectionView(
                connection=connection,
                delivered=delivered,
                delivered_attributes=_rows(_in_order(sent, list(upcoming)), names),
                attempt=attempt if attempt is not None and attempt != delivered else None,
                planned=planned,
                next_attributes=_rows(upcoming, names, sent if delivered else None),
                queued=queued.get(connection.pk),
            )
        )
    return PersonView(connections=views, history=person_timeline.timeline(profile, history_page))

