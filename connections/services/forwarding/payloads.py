"""What each claimed profile should receive, computed from the database at send time.

Coalescing happens here: every outbox row of a profile becomes one identify carrying the
current state, so a slow retry can never send older state than the database holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from connections.customerio.limits import AttributeValue, limit_violation
from connections.models import Connection, Membership, Profile, Subscription
from connections.services.erasure import suppression
from connections.services.forwarding.attributes import (
    AudienceState,
    Identifier,
    ProfileData,
    SegmentLink,
    SegmentOperation,
    choose_identifier,
    identity_attributes,
    membership_attributes,
    segment_operations,
)

# A row without an audience (identity change, resync, retry) asks for the full state of the
# profile: with one attribute per audience, every forwarded audience's "In <name>". That way a
# profile that only now becomes forwardable (it gained the identifier the connection uses) gets
# its earlier memberships too, and a bounded outbox that keeps one such row per profile loses no
# intent when an identity change and a resync of the same profile meet.

NOT_SUBSCRIBED = "Subscription no longer active: not sent; Customer.io keeps its attributes."
PROFILE_GONE = "The profile was deleted here before it was sent: nothing sent."


@dataclass
class ClaimedRow:
    id: int
    profile_id: int
    audience_id: int | None
    reason: str
    attempts: int


@dataclass
class Planned:
    """One profile's identify (and manual-segment changes), or why it is not sent."""

    profile_id: int
    customer_id: str  # the identifier's value, as the log shows it (an email with identify_by email)
    reason: str  # of the first row, for the log
    attempt: int
    row_ids: list[int] = field(default_factory=list)
    identifier: Identifier | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    segment_operations: list[SegmentOperation] = field(default_factory=list)
    skip: str = ""  # non-empty: recorded as skipped
    cancel: str = ""  # non-empty: recorded as cancelled
    violation: str = ""  # non-empty: recorded as failed (a Customer.io limit)
    gone: bool = False  # the profile no longer exists (its log entry names no profile)

    @property
    def sendable(self) -> bool:
        return not (self.skip or self.cancel or self.violation)


def plan(connection: Connection, rows: Iterable[ClaimedRow]) -> list[Planned]:
    by_profile: dict[int, list[ClaimedRow]] = defaultdict(list)
    for row in rows:
        by_profile[row.profile_id].append(row)
    if not by_profile:
        return []

    subscribed = list(
        Subscription.objects.filter(connection=connection, status=Subscription.Status.ACTIVE).values_list(
            "audience_id", "audience__audience_id", "customerio_segment_id", "audience__name"
        )
    )
    active = {audience_pk: audience_id for audience_pk, audience_id, _, _ in subscribed}
    links = [SegmentLink(audience_pk, segment) for audience_pk, _, segment, _ in subscribed if segment]
    names = {audience_pk: name for audience_pk, _, _, name in subscribed}
    membership: dict[int, dict[int, bool]] = defaultdict(dict)
    bounds = (min(by_profile), max(by_profile))
    if active:
        # The id bounds add nothing to the answer, but give PostgreSQL one index range per audience
        # (membership_audience_profile) where a streamed page's thousand ids are contiguous; for the
        # thousand ids alone it chose to read the whole table (16 ms at 100,000 memberships).
        for profile_id, audience_pk, is_member in Membership.objects.filter(
            profile_id__any=by_profile, profile_id__gte=bounds[0], profile_id__lte=bounds[1], audience_id__in=active
        ).values_list("profile_id", "audience_id", "is_member"):
            membership[profile_id][audience_pk] = is_member
    profiles = {
        p["id"]: p
        for p in Profile.objects.filter(pk__any=by_profile, pk__range=bounds).values(
            "id", "customer_id", "email", "first_name", "last_name"
        )
    }

    suppressed = suppression.suppressed_profiles(connection, profiles.values())  # erased and suppressed
    planned = []
    # What depends only on a person's membership records is the same for everyone with the same
    # records (every member of a page of an activation): computed once per kind of person.
    by_records: dict[tuple, tuple[dict[str, AttributeValue], list[SegmentOperation]]] = {}

    def state_of(audience_pks: Iterable[int], records: dict[int, bool]) -> list[AudienceState]:
        return [
            AudienceState(active[a], names[a], records.get(a, False))
            for a in sorted(audience_pks, key=lambda a: active[a])
        ]

    def membership_part(
        records: dict[int, bool], live: set[int], general: bool
    ) -> tuple[dict[str, AttributeValue], list[SegmentOperation]]:
        # Toggle off, SegmentMembership always lists every forwarded audience.
        chosen = live if connection.one_attribute_per_audience and not general else set(records)
        attributes = membership_attributes(
            one_attribute_per_audience=connection.one_attribute_per_audience,
            forwarded_audiences=state_of(chosen, records),
            segment_membership_always=connection.segment_membership_always,
            segment_membership_audiences=state_of(records, records) if connection.segment_membership_always else None,
            update_existing_only=connection.update_existing_only,
        )
        return attributes, segment_operations(links, records, None if general else live)

    for profile_id, profile_rows in by_profile.items():
        p = profiles.get(profile_id)
        item = Planned(
            profile_id=profile_id,
            customer_id=p["customer_id"] if p else "",
            reason=profile_rows[0].reason,
            attempt=max(r.attempts for r in profile_rows) + 1,
            row_ids=[r.id for r in profile_rows],
        )
        planned.append(item)
        if p is None:  # deleted (erased) after its rows were queued: the outbox has no constraint to stop it
            item.cancel, item.gone = PROFILE_GONE, True
            continue
        audience_rows = {r.audience_id for r in profile_rows if r.audience_id is not None}
        general = [r for r in profile_rows if r.audience_id is None]
        live = audience_rows & active.keys()
        if not live and not general:
            item.cancel = NOT_SUBSCRIBED
            continue
        data = ProfileData(p["customer_id"], p["email"], p["first_name"], p["last_name"])
        identifier = choose_identifier(data, connection.identify_by)
        if isinstance(identifier, str):  # why this profile has no identifier this connection can use
            item.skip = identifier
            continue
        if reason := suppressed.get(profile_id):
            item.skip = reason
            continue
        item.identifier, item.customer_id = identifier, identifier.value
        records = membership.get(profile_id, {})
        key = (tuple(sorted(records.items())), bool(general), tuple(sorted(live)))
        if (shared := by_records.get(key)) is None:
            shared = by_records[key] = membership_part(records, live, bool(general))
        item.attributes = identity_attributes(data)
        item.attributes.update(shared[0])
        item.segment_operations = shared[1]
        item.violation = limit_violation(identifier, item.attributes, connection.transport) or ""
    return planned
