"""What Customer.io receives for one person, per connection: for the profile page.

Computed by `payloads.plan`, the code the worker runs, with one audience-less claimed row (the
person's full state, as a resync sends it), so the page shows exactly what the next update
carries. Writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from connections.models import Connection, Delivery, Forward, Profile, Subscription
from connections.services.forwarding.payloads import ClaimedRow, Planned, plan

RECENT_DELIVERIES = 10


@dataclass(frozen=True)
class ConnectionView:
    connection: Connection
    planned: Planned
    queued: bool  # an update for this person waits in the outbox
    last_delivery: Delivery | None


@dataclass(frozen=True)
class PersonView:
    connections: list[ConnectionView]
    recent_deliveries: list[Delivery]


def forwarded_to(profile: Profile) -> list[Connection]:
    """The connections with an active subscription to an audience the person has a membership record in."""
    ids = (
        Subscription.objects.filter(
            status=Subscription.Status.ACTIVE, audience__memberships__profile=profile
        )
        .values_list("connection_id", flat=True)
        .distinct()
    )
    return list(Connection.objects.filter(pk__in=ids).defer(*Connection.SECRET_FIELDS).order_by("name"))


def build(profile: Profile) -> PersonView:
    views = []
    for connection in forwarded_to(profile):
        row = ClaimedRow(id=0, profile_id=profile.pk, audience_id=None, reason=Forward.Reason.RESYNC, attempts=0)
        [planned] = plan(connection, [row])
        views.append(
            ConnectionView(
                connection=connection,
                planned=planned,
                queued=Forward.objects.filter(connection=connection, profile=profile).exists(),
                last_delivery=Delivery.objects.filter(connection=connection, profile=profile)
                .order_by("-created_at", "-pk")
                .first(),
            )
        )
    recent = list(
        Delivery.objects.filter(profile=profile)
        .select_related("connection")
        .defer("connection__api_key", "connection__app_api_key")
        .order_by("-created_at", "-pk")[:RECENT_DELIVERIES]
    )
    reasons = dict(Forward.Reason.choices)
    for delivery in recent:
        delivery.reason_label = reasons.get(delivery.reason, delivery.reason)  # type: ignore[attr-defined]
    return PersonView(connections=views, recent_deliveries=recent)
