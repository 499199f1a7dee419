"""An audience in numbers, for its admin page and list: members, ex-members, where it is forwarded;
and a connection's audiences, for the connection's page.

Counts use the (audience, is_member) index of memberships: one grouped query for a whole page
of audiences. The last forward to a connection is looked for among that connection's latest
`LAST_FORWARD_WINDOW` log rows, so a page never walks a log of millions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q

from connections.models import Audience, Delivery, Forward, Membership, Subscription
from connections.services.visibility.figures import BoundedCount, bounded_count

LAST_FORWARD_WINDOW = 5000
# A connection's page lists this many of its subscriptions, by audience name; the rest are
# one link away, in the subscription list filtered by the connection.
CONNECTION_AUDIENCES_SHOWN = 50


@dataclass(frozen=True)
class MemberCounts:
    members: int = 0
    ex_members: int = 0


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    waiting: BoundedCount  # this audience's changes queued for the connection
    last_forward: Delivery | None


@dataclass(frozen=True)
class ForwardedAudience:
    subscription: Subscription  # its audience loaded
    members: int


@dataclass(frozen=True)
class ConnectionAudiences:
    shown: list[ForwardedAudience]
    total: int  # subscriptions of the connection, shown or not
    active: int


def connection_audiences(connection_id: int, limit: int = CONNECTION_AUDIENCES_SHOWN) -> ConnectionAudiences:
    """The audiences a connection forwards or forwarded, by name (a row stays in place when it is toggled)."""
    rows = Subscription.objects.filter(connection_id=connection_id)
    totals = rows.aggregate(total=Count("pk"), active=Count("pk", filter=Q(status=Subscription.Status.ACTIVE)))
    shown = list(rows.select_related("audience").order_by("audience__name", "pk")[:limit])
    counts = member_counts(row.audience_id for row in shown)
    return ConnectionAudiences(
        shown=[ForwardedAudience(row, counts.get(row.audience_id, MemberCounts()).members) for row in shown],
        total=totals["total"],
        active=totals["active"],
    )


def member_counts(audience_pks: Iterable[int]) -> dict[int, MemberCounts]:
    pks = list(audience_pks)
    if not pks:
        return {}
    found: dict[int, dict[bool, int]] = {}
    # COUNT(*), not COUNT(id): the (audience, is_member) index alone answers it (an index-only
    # scan), without reading a million table rows (measured: 277 ms -> 135 ms at 1M members).
    rows = Membership.objects.filter(audience_id__in=pks).values("audience_id", "is_member").annotate(n=Count("*"))
    for row in rows.order_by():
        found.setdefault(row["audience_id"], {})[row["is_member"]] = row["n"]
    return {pk: MemberCounts(counts.get(True, 0), counts.get(False, 0)) for pk, counts in found.items()}


def last_forward(subscription: Subscription) -> Delivery | None:
    """The latest delivery to the connection of someone with a membership record in the audience."""
    latest = Delivery.objects.filter(connection_id=subscription.connection_id).order_by("-created_at")
    return (
        Delivery.objects.filter(
            pk__in=latest.values("pk")[:LAST_FORWARD_WINDOW],
            profile__memberships__audience_id=subscription.audience_id,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def subscriptions(audience: Audience) -> list[SubscriptionView]:
    rows = (
        Subscription.objects.filter(audience=audience)
        .select_related("connection")
        .defer("connection__api_key", "connection__app_api_key")
        .order_by("connection__name")
    )
    return [
        SubscriptionView(
            subscription=row,
            waiting=bounded_count(Forward.objects.filter(connection_id=row.connection_id, audience=audience)),
            last_forward=last_forward(row),
        )
        for row in rows
    ]
