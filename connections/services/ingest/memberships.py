"""Membership and identity changes: the one path by which data enters (Firehose, import, admin).

`apply_changes` writes profiles, memberships and the outbox in the caller's transaction with
one statement per table however many profiles a batch carries (`bulk`: the rows as one JSON
parameter on PostgreSQL, VALUES lists elsewhere), in this order:

1. audiences: found (created when new);
2. profiles: found by mpid or customer ID, inserted, updated (`profile_rows`);
3. memberships: one upsert, returning the pairs whose state changed; a change older than the
   stored source time is ignored (out-of-order messages, see `membership_rows`);
4. the outbox: `INSERT ... ON CONFLICT DO NOTHING` (at most one waiting row per key), in the
   same statement as the memberships on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from connections.models import Audience, Forward, Membership, Profile, Subscription
from connections.services.ingest import membership_rows, profile_rows
from connections.services.ingest.profile_rows import IDENTITY_FIELDS, ProfileInput
from connections.services.outbox import bulk
from connections.services.outbox import queue as outbox

__all__ = ["IDENTITY_FIELDS", "ApplyResult", "ProfileChange", "ProfileInput", "apply_changes"]


@dataclass(frozen=True)
class ProfileChange:
    profile: ProfileInput
    # audience_id (the source system's id) -> True (joined), False (left)
    memberships: dict[int, bool] = field(default_factory=dict)
    # When the source made this change, if not the batch's `source_time` (the Firehose applier
    # merges many messages, each with its own time, into one batch).
    source_time: datetime | None = None


@dataclass
class ApplyResult:
    profiles_created: int = 0
    profiles_updated: int = 0
    memberships_changed: int = 0
    forwards_queued: int = 0


def ensure_audiences(names_by_id: dict[int, str]) -> dict[int, int]:
    """audience_id -> the audience's pk, creating the ones not seen before (with the given name).

    The audiences found are kept (FOR KEY SHARE) until the caller's transaction commits: its
    memberships have no foreign key constraint, and deleting an audience waits for them.
    """
    found = _stored_audiences(list(names_by_id))
    missing = [Audience(audience_id=i, name=names_by_id[i] or str(i)) for i in names_by_id if i not in found]
    if missing:
        Audience.objects.bulk_create(missing, ignore_conflicts=True)
        found = _stored_audiences(list(names_by_id))
    return found


def _stored_audiences(audience_ids: list[int]) -> dict[int, int]:
    db = bulk.database(Audience)
    if not bulk.is_postgresql(db):  # SQLite: one writer at a time, nothing to lock
        return dict(Audience.objects.filter(audience_id__in=audience_ids).values_list("audience_id", "pk"))
    with db.cursor() as cursor:
        # Shared, unlike Django's select_for_update(): every message names the same few audiences.
        cursor.execute(
            f"SELECT audience_id, id FROM {Audience._meta.db_table} WHERE audience_id = ANY(%s) FOR KEY SHARE",  # noqa: S608
            [audience_ids],
        )
        return dict(cursor.fetchall())


# No savepoint when called inside a transaction (the Firehose message's): it would cost two round
# trips per message, and no caller catches a failure inside its own transaction to go on.
@transaction.atomic(savepoint=False)
def apply_changes(
    changes: Sequence[ProfileChange],
    audience_names: dict[int, str] | None = None,
    source_time: datetime | None = None,
) -> ApplyResult:
    """Apply profile and membership changes and queue what must be forwarded, all in one transaction.

    `source_time` is when the source made the changes (a Firehose message's timestamp); None
    means now (the admin, the import). A time later than now counts as now, so a source clock
    running ahead cannot shield a membership from the changes that follow.
    """
    result = ApplyResult()
    if not changes:
        return result
    now = timezone.now()
    source_time = now if source_time is None else min(source_time, now)
    names = dict(audience_names or {})
    for change in changes:
        for audience_id in change.memberships:
            names.setdefault(audience_id, str(audience_id))
    audiences = ensure_audiences(names) if names else {}

    resolved = profile_rows.resolve([c.profile for c in changes], now)
    result.profiles_created += resolved.created
    result.profiles_updated += resolved.updated
    pairs: dict[tuple[int, int], tuple[bool, datetime]] = {}
    for change in changes:
        profile_pk = resolved.pks[profile_rows.key(change.profile)]
        at = source_time if change.source_time is None else min(change.source_time, now)
        for audience_id, is_member in change.memberships.items():
            pair = (profile_pk, audiences[audience_id])
            # Of several changes to one pair in a batch, the one applied one at a time would leave
            # stands: the newest source time, and of equal times the later change.
            if pair not in pairs or pairs[pair][1] <= at:
                pairs[pair] = (is_member, at)
    # Identity forwards go in the same statement as the memberships' (one key order for every
    # outbox writer): the memberships' statement queues its own only when there are none.
    recorded = membership_rows.record(pairs, now, queue=not resolved.identity_changed)
    result.memberships_changed += len(recorded.changed)

    keys = recorded.forward_keys
    identity_keys: set[outbox.ForwardKey] = set()
    if resolved.identity_changed:
        forwarded = {(c, p) for c, p, _ in keys}
        for connection_id, profile_pk in connections_forwarding_profiles(resolved.identity_changed):
            if (connection_id, profile_pk) not in forwarded:
                identity_keys.add((connection_id, profile_pk, None))
    to_queue = {Forward.Reason.IDENTITY: identity_keys}
    if recorded.queued:
        outbox.wake_workers(c for c, _, _ in keys)
        result.forwards_queued += len(keys)
    else:
        to_queue[Forward.Reason.MEMBERSHIP] = keys
    result.forwards_queued += outbox.enqueue_by_reason(to_queue)
    return result


def connections_forwarding_profiles(profile_pks: set[int]) -> set[tuple[int, int]]:
    """(connection pk, profile pk) for every active subscription to an audience the profile has a record in."""
    db = bulk.database(Membership)
    if not bulk.is_postgresql(db):
        rows = Membership.objects.filter(
            profile_id__in=profile_pks,
            audience__subscriptions__status=Subscription.Status.ACTIVE,
        ).values_list("audience__subscriptions__connection_id", "profile_id")
        return set(rows)
    with db.cursor() as cursor:
        # One index probe per profile (LATERAL ... OFFSET 0 keeps the subquery from being merged
        # into a join), whatever the statistics say: planned as a join, the lookup read every
        # membership of the subscribed audiences, 13 ms per message at 10,000 rows, growing with
        # the table (see bench/ingest_profile.py --pool). Without statistics the planner guesses
        # thousands of rows per probe, and at 1,000,000 memberships that guess crosses
        # jit_above_cost: compiling the plan took 40-550 ms for a lookup that runs in 0.7 ms.
        # Always inside the caller's transaction (apply_changes, update_profile_identity).
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            f"SELECT s.connection_id, m.profile_id FROM unnest(%s::bigint[]) k(id),"  # noqa: S608
            f" LATERAL (SELECT profile_id, audience_id FROM {Membership._meta.db_table}"
            " WHERE profile_id = k.id OFFSET 0) m"
            f" JOIN {Subscription._meta.db_table} s ON s.audience_id = m.audience_id AND s.status = %s",
            [sorted(profile_pks), Subscription.Status.ACTIVE.value],
        )
        return set(cursor.fetchall())


def update_profile_identity(profile: Profile, **fields: str) -> bool:
    """Change a profile's email or names (admin edits); forwards the change when it is forwarded."""
    changed = {k: v for k, v in fields.items() if getattr(profile, k) != v}
    if not changed:
        return False
    with transaction.atomic():
        for k, v in changed.items():
            setattr(profile, k, v)
        profile.save(update_fields=[*changed, "updated_at"])
        outbox.enqueue(
            ((c, p, None) for c, p in connections_forwarding_profiles({profile.pk})), Forward.Reason.IDENTITY
        )
    return True
