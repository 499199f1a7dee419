"""Steps 3 and 4 of `memberships.apply_changes`: memberships written, their forwards queued.

One upsert writes every (profile, audience) pair of a batch and returns the pairs whose state
changed. On PostgreSQL the same statement also queues their forwards (a data-modifying CTE:
`INSERT INTO forward ... SELECT FROM` the upsert's RETURNING rows joined to the active
subscriptions, `ON CONFLICT DO NOTHING`), so a batch's memberships and outbox rows cost one
round trip. Elsewhere the caller looks the subscriptions up and queues the keys returned.

Out-of-order rule: a change whose source time is older than the stored one arrived late and
is ignored; an equal time is applied (the last writer wins). A change that repeats the stored
state still moves the stored source time forward, so an older change arriving after it loses.
`changed_at` moves only when the state changes, which is how RETURNING tells changes apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from connections.models import Forward, Membership, Subscription
from connections.services.outbox import bulk
from connections.services.outbox import queue as outbox

Pair = tuple[int, int]  # (profile pk, audience pk)
COLUMNS = [
    ("profile_id", "bigint"),
    ("audience_id", "bigint"),
    ("is_member", "boolean"),
    ("source_time", "timestamptz"),
]


@dataclass
class Recorded:
    changed: set[Pair]  # pairs whose state changed
    forward_keys: set[outbox.ForwardKey]  # their forwards, for every active subscription
    queued: bool  # the forward rows are written already (PostgreSQL); otherwise the caller queues them


def record(pairs: dict[Pair, tuple[bool, datetime]], now: datetime, *, queue: bool = True) -> Recorded:
    """Write the memberships (pair -> (is member, source time)); on PostgreSQL with `queue`, their forwards too.

    Without `queue` the caller queues the keys returned, together with others of its own: every
    outbox writer inserts all its keys in one statement, in one key order (`outbox._order`), or
    two writers of the same keys could each wait for the other.
    """
    if not pairs:
        return Recorded(set(), set(), queued=True)
    db = bulk.database(Membership)
    stamp = bulk.timestamp(db, now)
    # One lock order for concurrent messages.
    sources: dict[datetime, Any] = {}  # a batch's pairs share a few source times
    rows = sorted(
        (p, a, m, sources.get(at) or sources.setdefault(at, _source(db, at))) for (p, a), (m, at) in pairs.items()
    )
    upsert = (
        f"INSERT INTO {Membership._meta.db_table} AS m"  # noqa: S608
        " (profile_id, audience_id, is_member, changed_at, source_time)"
        " SELECT profile_id, audience_id, is_member, %s, source_time FROM v WHERE true"
        " ON CONFLICT (profile_id, audience_id) DO UPDATE SET is_member = excluded.is_member,"
        " changed_at = CASE WHEN m.is_member = excluded.is_member THEN m.changed_at ELSE excluded.changed_at END,"
        " source_time = excluded.source_time"
        " WHERE m.source_time IS NULL OR m.source_time <= excluded.source_time"
        " RETURNING profile_id, audience_id, changed_at = %s AS changed"
    )
    if not queue or not bulk.is_postgresql(db):
        returned = bulk.run(db, COLUMNS, rows, upsert, [stamp, stamp])
        changed = {(p, a) for p, a, is_changed in returned if is_changed}
        by_audience = outbox.active_connection_ids_by_audience({a for _, a in changed}) if changed else {}
        keys = {(c, p, a) for p, a in changed for c in by_audience.get(a, ())}
        return Recorded(changed, keys, queued=False)

    subscriptions = Subscription._meta.db_table
    active = f"s.audience_id = c.audience_id AND s.status = '{Subscription.Status.ACTIVE.value}'"
    returned = bulk.run(
        db,
        COLUMNS,
        rows,
        f", c AS ({upsert}),"  # noqa: S608
        f" queued AS (INSERT INTO {Forward._meta.db_table} (connection_id, profile_id, audience_id, reason,"
        " created_at, due_at, attempts, claim_token)"
        f" SELECT s.connection_id, c.profile_id, c.audience_id, '{Forward.Reason.MEMBERSHIP.value}', %s, %s, 0, ''"
        f" FROM c JOIN {subscriptions} s ON {active} WHERE c.changed"
        # The same insertion order as outbox.enqueue_by_reason; one waiting row per key at most.
        " ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING)"
        f" SELECT c.profile_id, c.audience_id, c.changed, s.connection_id"
        f" FROM c LEFT JOIN {subscriptions} s ON {active} AND c.changed",
        [stamp, stamp, stamp, stamp],
    )
    changed = {(p, a) for p, a, is_changed, _ in returned if is_changed}
    keys = {(c, p, a) for p, a, is_changed, c in returned if is_changed and c is not None}
    return Recorded(changed, keys, queued=True)


def _source(db: BaseDatabaseWrapper, at: datetime) -> Any:
    """A row's source time: ISO 8601 text in the JSON rows on PostgreSQL, the stored form elsewhere."""
    return at.isoformat() if bulk.is_postgresql(db) else bulk.timestamp(db, at)
