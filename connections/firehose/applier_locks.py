"""The locks of the Firehose appliers (`inbox`): a slot per running applier, a lock per shard.

PostgreSQL advisory locks in one namespace (the two-key form, so they meet no other lock):

- a *slot* (session-level, held while `inbox.apply_pending` runs): how many appliers run, so each
  takes a fair share of the shards, and no more than FIREHOSE_APPLIERS run at once;
- a *shard* (transaction-level, held by a batch until it commits): only its holder applies that
  slice of the messages (`shards`). A batch tries its share without waiting; a barrier waits for
  every shard, always in shard order, so two waiting appliers cannot deadlock.

SQLite has one writer at a time (IMMEDIATE transactions take the write lock at BEGIN): there one
applier holds every shard, and the slots count one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from connections.firehose import shards
from connections.models import FirehoseMessage
from connections.services.outbox import bulk

logger = logging.getLogger(__name__)

NAMESPACE = 0x63696F61  # "cioa"
SLOT_BASE = 1 << 16  # slots are (NAMESPACE, SLOT_BASE + n); shards (NAMESPACE, shard)


def _db() -> BaseDatabaseWrapper:
    return bulk.database(FirehoseMessage)


@contextlib.contextmanager
def slot(limit: int) -> Iterator[int | None]:
    """One of `limit` applier slots for the duration, or None when every one is taken."""
    db = _db()
    if not bulk.is_postgresql(db):
        yield 0
        return
    taken = None
    with db.cursor() as cursor:
        for n in range(limit):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [NAMESPACE, SLOT_BASE + n])
            if cursor.fetchone()[0]:
                taken = n
                break
    try:
        yield taken
    finally:
        if taken is not None:
            _release_slot(db, taken)


def _release_slot(db: BaseDatabaseWrapper, n: int) -> None:
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [NAMESPACE, SLOT_BASE + n])
    except DatabaseError as exc:
        # The connection broke, and a session lock ends with its session: nothing is held.
        logger.info("Firehose applier slot %d released with its broken connection (%s)", n, exc)


def concurrent() -> bool:
    """Whether appliers can run at once (PostgreSQL; SQLite has one writer)."""
    return bulk.is_postgresql(_db())


def running() -> int:
    """Appliers holding a slot now."""
    return len(_slots_held())


def running_and_rank(slot: int) -> tuple[int, int]:
    """Appliers holding a slot now, and how many of them hold a lower slot than `slot`.

    The ranks 0..running-1 give each applier its own part of the shards, whichever slots they hold.
    """
    held = _slots_held()
    return max(1, len(held)), sum(1 for n in held if n < slot)


def _slots_held() -> list[int]:
    db = _db()
    if not bulk.is_postgresql(db):
        return [0]
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT objid::bigint - %s FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = %s AND objid::bigint >= %s AND objsubid = 2",
            [SLOT_BASE, NAMESPACE, SLOT_BASE],
        )
        return [int(row[0]) for row in cursor.fetchall()]


def try_shards(wanted: list[int]) -> frozenset[int]:
    """Of `wanted`, the shards this transaction could lock without waiting."""
    db = _db()
    if not bulk.is_postgresql(db):
        return frozenset(wanted)
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::int[]) WITH ORDINALITY AS w(s, n)"
            " WHERE pg_try_advisory_xact_lock(%s, s) ORDER BY n",
            [wanted, NAMESPACE],
        )
        return frozenset(row[0] for row in cursor.fetchall())


def every_shard() -> frozenset[int]:
    """Every shard, for this transaction: waits for the batches holding any, in shard order."""
    db = _db()
    if bulk.is_postgresql(db):
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, s) FROM generate_series(0, %s) s",
                [NAMESPACE, shards.SHARDS - 1],
            )
    return frozenset(range(shards.SHARDS))
