"""Writing the transactional outbox: `Forward` rows, written in the caller's transaction.

Every change that must reach Customer.io calls one of these inside the same transaction
that writes the change; the worker is woken on commit (with IDs only). If the broker
message is lost, the periodic sweep finds the rows anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection as db_connection
from django.utils import timezone

from connections.models import Connection, Forward, Membership, Subscription
from connections.services.outbox import bulk
from connections.services.outbox.wakeup import wake_workers

ForwardKey = tuple[int, int, int | None]  # (connection pk, profile pk, audience pk or None)

__all__ = [
    "active_connection_ids_by_audience",
    "enqueue",
    "enqueue_audience_members",
    "enqueue_by_reason",
    "remove_orphans",
    "wake_workers",
]


def enqueue(keys: Iterable[ForwardKey], reason: str) -> int:
    """Queue forwards for (connection, profile, audience) triples; returns how many keys were given.

    A key that already waits in the outbox is left as it is (ON CONFLICT DO NOTHING): its
    payload is computed from the database when it is sent, so it carries this change too.
    """
    return enqueue_by_reason({reason: set(keys)})


def enqueue_by_reason(keys_by_reason: dict[str, set[ForwardKey]]) -> int:
    """`enqueue` for keys with different reasons, in one statement (a VALUES list off PostgreSQL)."""
    # All keys in one order, whatever their reason (a key under two reasons keeps the first given).
    position = {reason: i for i, reason in enumerate(keys_by_reason)}
    rows = sorted(
        ((c, p, a, reason) for reason, keys in keys_by_reason.items() for c, p, a in keys),
        key=lambda row: (*_order(row[:3]), position[row[3]]),
    )
    if not rows:
        return 0
    db = bulk.database(Forward)
    stamp = bulk.timestamp(db, timezone.now())
    bulk.run(
        db,
        [("connection_id", "bigint"), ("profile_id", "bigint"), ("audience_id", "bigint"), ("reason", "text")],
        rows,
        f"INSERT INTO {Forward._meta.db_table} (connection_id, profile_id, audience_id, reason, created_at,"  # noqa: S608
        " due_at, attempts, claim_token) SELECT connection_id, profile_id, audience_id, reason, %s, %s, 0, ''"
        # The partial unique index keeps one waiting row per key (SQLite needs the WHERE to parse this).
        " FROM v WHERE true ON CONFLICT DO NOTHING",
        [stamp, stamp],
    )
    wake_workers({row[0] for row in rows})
    return len(rows)


def _order(key: ForwardKey) -> tuple[int, int, int]:
    # One insertion order for all writers, so two transactions queueing the same keys wait
    # for each other rather than deadlock.
    return (key[0], key[1], key[2] or 0)


def enqueue_audience_members(connection_id: int, audience_pk: int, reason: str) -> int:
    """Queue every current member of an audience for one connection, in one INSERT ... SELECT.

    Used by activation (backfill) and renames: audiences can have millions of members, so
    the rows are never brought into Python.
    """
    now = timezone.now()
    forward = Forward._meta.db_table
    membership = Membership._meta.db_table
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {forward} (connection_id, profile_id, audience_id, reason, created_at, due_at,"  # noqa: S608
            f" attempts, claim_token) SELECT %s, m.profile_id, m.audience_id, %s, %s, %s, 0, ''"
            f" FROM {membership} m WHERE m.audience_id = %s AND m.is_member = %s"
            # `ON CONFLICT` after INSERT ... SELECT needs a WHERE in SQLite's grammar (it has one).
            " ON CONFLICT DO NOTHING",
            [connection_id, reason, now, now, audience_pk, True],
        )
        count = cursor.rowcount
    if count:
        wake_workers([connection_id])
    return count


def active_connection_ids_by_audience(audience_pks: Iterable[int]) -> dict[int, list[int]]:
    """audience pk -> connection pks with an active subscription to it."""
    result: dict[int, list[int]] = {}
    rows = Subscription.objects.filter(audience_id__in=set(audience_pks), status=Subscription.Status.ACTIVE)
    for audience_id, connection_id in rows.values_list("audience_id", "connection_id"):
        result.setdefault(audience_id, []).append(connection_id)
    return result


def remove_orphans() -> int:
    """Delete outbox rows of connections that no longer exist; returns how many.

    Deleting a connection deletes its rows, but the outbox has no foreign key constraint (each
    would cost every queued forward a lookup at commit), so a message committed while the
    connection was being deleted can leave rows behind; no worker ever claims them.
    """
    return Forward.objects.exclude(connection_id__in=Connection.objects.values("pk")).delete()[0]
