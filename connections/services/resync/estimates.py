"""What a resync or a new manual segment would send, counted before it starts (the admin asks first).

The people are those a run would queue, counted as `runs.count_profiles` counts them (the total
a run's progress, and the dry run, show), without planning each profile: that stays cheap for
millions. The requests follow from the connection's transport (`transports.for_connection`):
v2 sends the people of each claim of `FORWARD_BATCH_SIZE` in batches (one per claim, more when
their attributes fill Customer.io's batch size limit first), v1 one request per person; a
manual segment adds, per claim, a request per segment and action (add members, remove
ex-members). People skipped when the time comes (no identifier, suppressed) are counted too, so
the figures are an upper bound on people and close to the requests sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Count, Q

from connections.customerio.client import SEGMENT_MAX_IDS
from connections.models import Connection, Forward, Membership, Subscription
from connections.services.forwarding import transports
from connections.services.resync import runs


@dataclass(frozen=True)
class Estimate:
    """How many people would be sent, and in about how many requests to Customer.io."""

    people: int
    requests: int


def resync(connection: Connection) -> Estimate:
    """A resync of every active subscription (the admin's Resync): every member and recorded ex-member."""
    scope = runs.scope_for(connection)
    people = runs.count_profiles(scope)
    linked: dict[int, list[int]] = {}
    for audience_pk, segment_id in Subscription.objects.filter(
        connection=connection, status=Subscription.Status.ACTIVE, customerio_segment_id__isnull=False
    ).values_list("audience_id", "customerio_segment_id"):
        linked.setdefault(segment_id, []).append(audience_pk)
    segment_requests = 0
    for audience_pks in linked.values():
        counted = Membership.objects.filter(audience_id__in=audience_pks).aggregate(
            recorded=Count("profile_id", distinct=True),
            members=Count("profile_id", distinct=True, filter=Q(is_member=True)),
        )
        removed = counted["recorded"] - counted["members"]
        for ids in (counted["members"], removed):
            segment_requests += _segment_requests(connection, people, ids)
    return Estimate(people, _identify_requests(connection, people) + segment_requests)


def new_segment(subscription: Subscription) -> Estimate:
    """Creating a manual segment for a subscription: one request to create it; if the subscription is
    active, its audience's current members are then sent and added to it (the backfill)."""
    if subscription.status != Subscription.Status.ACTIVE:
        return Estimate(0, 1)
    connection = subscription.connection
    scope = runs.Scope(connection, subscription.audience, (subscription.audience_id,), Forward.Reason.ACTIVATION)
    members = runs.count_profiles(scope)
    requests = 1 + _identify_requests(connection, members) + _segment_requests(connection, members, members)
    return Estimate(members, requests)


def how_sent(connection: Connection) -> str:
    """How the connection's transport groups people into requests, in a few words."""
    if connection.transport == Connection.Transport.V1:
        return "v1: one request per person"
    return f"v2 batches of up to {_claim_size(connection):,} people"


def _claim_size(connection: Connection) -> int:
    return transports.for_connection(connection).claim_size(probe=False)


def _identify_requests(connection: Connection, people: int) -> int:
    if connection.transport == Connection.Transport.V1:
        return people
    return math.ceil(people / _claim_size(connection))


def _segment_requests(connection: Connection, people: int, ids: int) -> int:
    """Requests naming `ids` people of `people` sent: at least one per SEGMENT_MAX_IDS ids, and one
    per claim that holds any of them (spread evenly, every claim does, up to one per id)."""
    if not ids:
        return 0
    claims = math.ceil(people / _claim_size(connection))
    return max(math.ceil(ids / SEGMENT_MAX_IDS), min(ids, claims))
