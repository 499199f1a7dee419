"""Firehose messages applied by workers (FIREHOSE_APPLY=worker), each person's in the order they were accepted.

The request checks a message as the request-time path would (its fields, its Connection Key),
records it with its answer and its body (`FirehoseMessage.pending`), answers, and wakes a worker
(`ingest.accept`). Here workers apply what is pending, up to FIREHOSE_APPLIERS at once: each
membership message's people are split into shards by who they are (`shards`, where the ordering
rules are proven), and an applier applies the oldest pending messages' slices of the shards it
holds, many messages in one set-based `apply_changes` (`slices`), one transaction per batch. So
two messages about one person are applied in the order they were answered, different people's
at once; a `dsr_processing_request`, an erasure queued by the admin or `erase_person` and an
`audience_subscription_request` are applied alone, after everything before them and before
anything after them. A message's body is cleared once every shard has applied it, so personal
data does not linger in the queue.

Nothing accepted is lost: a batch that fails (a deadlock, the database restarting) is rolled
back with the marks of what it applied, and its messages stay pending; the next wake-up or the
periodic sweep applies them. A message whose connection was deleted after it was accepted is
applied all the same, less what belonged to the connection (`ingest.apply`): a DSR still
erases, a membership change still reaches the other connections.

The admin's and `erase_person`'s erasures take their place in the same order
(`erase_in_order`): what waits is applied first, within `ERASURE_WAIT_SECONDS`; past that the
erasure is queued behind it (`queued_erasure`) and a worker carries it out in its turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction

from connections.firehose import applier_locks, ingest, queued_erasure, shards, slices
from connections.firehose.messages import MessageError, decode_body, parse_message
from connections.models import FirehoseMessage
from connections.services.erasure import local as erasure
from connections.services.outbox import bulk, wakeup

logger = logging.getLogger(__name__)

# Messages per transaction, applied together (one statement per table): 50 messages of 100 people
# apply about twice as fast as one by one, 5 per transaction (docs/benchmarks.md, bench/applier.py).
BATCH_SIZE = 50
ATTEMPTS = 3  # a batch rolled back by a deadlock or a concurrent insert is run again at once
IDLE_PAUSE = 0.05  # an applier whose shards are all held by others looks again after this


def has_pending() -> bool:
    return FirehoseMessage.objects.filter(pending=True).exists()


def apply_pending(
    *,
    time_budget: float | None = None,
    batch_size: int = BATCH_SIZE,
    exclusive: bool = False,
    on_backlog: Callable[[], object] | None = None,
) -> tuple[int, bool]:
    """Apply pending messages, oldest first, until none is left for this applier or `time_budget` seconds have passed.

    Returns (messages this applier applied slices of, whether some are still pending because
    the budget ran out). At most FIREHOSE_APPLIERS run at once (a caller finding them all
    running returns at once: they apply what waits). With `exclusive` every batch holds every
    shard, waiting for other appliers' batches: the caller then knows that nothing is left when
    it returns (`erase_in_order`). `on_backlog` is called once when a full batch leaves more and
    fewer appliers than allowed run: the task starts another.
    """
    deadline = None if time_budget is None else time.monotonic() + time_budget
    applied = 0
    while True:
        if exclusive:
            count, out_of_time = _apply_until_done(batch_size, deadline, None, None)
            return count, out_of_time
        with applier_locks.slot(max(1, settings.FIREHOSE_APPLIERS)) as slot:
            if slot is None:
                return applied, False  # as many appliers as allowed are at it
            count, out_of_time = _apply_until_done(batch_size, deadline, slot, on_backlog)
        applied += count
        if out_of_time:
            return applied, True
        # The last applier to leave looks once more after giving its slot back: another that left
        # at the same moment may have counted on it for the shards it did not hold.
        if not (has_pending() and applier_locks.running() == 0):
            return applied, False


def _apply_until_done(
    batch_size: int, deadline: float | None, slot: int | None, on_backlog: Callable[[], object] | None
) -> tuple[int, bool]:
    applied = 0
    asked_for_help = on_backlog is None
    while True:
        count, more = _apply_batch_with_retries(batch_size, slot)
        applied += count
        if not more:
            return applied, False
        if deadline is not None and time.monotonic() >= deadline:
            return applied, True
        if not asked_for_help and count >= batch_size:
            asked_for_help = True
            if applier_locks.concurrent() and applier_locks.running() < settings.FIREHOSE_APPLIERS:
                on_backlog()  # type: ignore[misc]
        if not count:
            time.sleep(IDLE_PAUSE)  # every shard it may take is held by others


def _apply_batch_with_retries(batch_size: int, slot: int | None) -> tuple[int, bool]:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _apply_batch(batch_size, slot)
        except (IntegrityError, OperationalError) as exc:
            if isinstance(exc, OperationalError) and not ingest.is_transient(exc):
                raise
            if attempt == ATTEMPTS:
                raise
            logger.info("Firehose messages met a concurrent transaction (%s); applying them again", exc)
    raise AssertionError("unreachable")


def _apply_batch(batch_size: int, slot: int | None) -> tuple[int, bool]:
    """One transaction: a barrier alone, or the held shards' slices of the oldest messages.

    `slot` None: hold every shard (an exclusive applier). Returns (messages applied, whether to
    go on: something was applied, or other appliers hold the shards it would take).
    """
    oldest = _first_pending()
    if oldest is None:
        return 0, False
    with transaction.atomic():
        if slot is None or oldest[2] in shards.BARRIER_TYPES:
            held = applier_locks.every_shard()
            first = _first_pending()  # again, now that no other batch runs
            if first is None:
                return 0, False
            if first[2] in shards.BARRIER_TYPES:
                _apply_barrier(*first)
                return 1, True
        else:
            running, rank = applier_locks.running_and_rank(slot)
            share = shards.fair_share(running)
            held = applier_locks.try_shards([(rank * share + n) % shards.SHARDS for n in range(share)])
            if not held:
                return 0, True
        rows = _slices_to_apply(held, batch_size)
        if not rows:
            return 0, False  # what waits is other shards', which their appliers hold
        _mark_applied(slices.apply(rows, held))
    return len(rows), len(rows) == batch_size or has_pending()


def _first_pending(*, barriers: bool = False) -> tuple[int, str, str, str | None] | None:
    """The oldest pending message (the oldest barrier, with `barriers`): (pk, message id, type, body)."""
    pending = FirehoseMessage.objects.filter(pending=True)
    if barriers:
        pending = pending.filter(message_type__in=shards.BARRIER_TYPES)
    return pending.order_by("id").values_list("id", "message_id", "message_type", "body").first()


def _slices_to_apply(held: frozenset[int], batch_size: int) -> list[slices.Stored]:
    """The oldest pending membership messages that some held shard has not applied, below the first barrier."""
    pending = FirehoseMessage.objects.filter(pending=True)
    barrier = _first_pending(barriers=True)
    if barrier is not None:
        pending = pending.filter(id__lt=barrier[0])
    wanted = shards.mask(held)
    rows = (
        pending.exclude(message_type__in=shards.BARRIER_TYPES)
        .order_by("id")
        .values_list("id", "message_id", "body", "shards_done")
    )
    found: list[slices.Stored] = []
    # Messages every held shard has applied (others' shards still to do) are passed over here
    # rather than in SQL: a bitwise filter is not portable, and they are few (the appliers keep pace).
    for pk, message_id, body, done in rows[: batch_size * 4].iterator():
        if done & wanted != wanted:
            found.append(slices.Stored(pk, message_id, body or "", done))
            if len(found) == batch_size:
                break
    return found


def _mark_applied(done: dict[int, int]) -> None:
    """Mark each message's applied shards; a message every shard has applied is no longer pending, its body cleared.

    The rows are locked in id order first (two appliers finishing slices of the same messages
    wait for each other rather than deadlock), and each row's update reads its committed marks.
    """
    if not done:
        return
    db = bulk.database(FirehoseMessage)
    table = FirehoseMessage._meta.db_table
    ordered = sorted(done.items())
    with db.cursor() as cursor:
        if bulk.is_postgresql(db):
            locking = f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE"  # noqa: S608
            cursor.execute(locking, [[pk for pk, _ in ordered]])
        bulk.run(
            db,
            [("id", "bigint"), ("mask", "integer")],
            ordered,
            f"UPDATE {table} SET shards_done = {table}.shards_done | v.mask,"  # noqa: S608
            f" pending = ({table}.shards_done | v.mask) <> %s,"
            f" body = CASE WHEN ({table}.shards_done | v.mask) = %s THEN NULL ELSE {table}.body END"
            f" FROM v WHERE {table}.id = v.id",
            [shards.ALL, shards.ALL],
        )


def _apply_barrier(pk: int, message_id: str, message_type: str, body: str | None) -> None:
    with transaction.atomic():  # whole or not at all, like every message
        _apply_stored(message_id, message_type, body or "")
    FirehoseMessage.objects.filter(pk=pk).update(pending=False, body=None, shards_done=shards.ALL)


def _apply_stored(message_id: str, message_type: str, body: str) -> None:
    """Apply one stored barrier message whole.

    It was checked when it was accepted, and is applied now whatever changed since: a connection
    deleted meanwhile leaves out only what was the connection's (`ingest.apply`).
    """
    if message_type == queued_erasure.MESSAGE_TYPE:
        queued_erasure.apply(body)
        return
    try:
        message = parse_message(decode_body(body.encode()))
    except MessageError as refused:
        # Only a change of this code's parsing since the message was accepted can land here.
        logger.error("Firehose message %s was accepted but no longer parses: %s", message_id, refused)
        return
    if not isinstance(message, ingest.StoredMessage):
        logger.error("Firehose message %s is a %s, which is answered, never stored", message_id, message_type)
        return
    connection = None
    if message.connection_key is not None:
        connection = ingest.connection_if_kept(message.connection_key)
        if connection is None:
            logger.warning(
                "Firehose message %s: its connection was deleted after it was accepted; "
                "applying what every connection shares",
                message_id,
            )
    ingest.apply(message, connection)


@dataclass
class InOrder:
    """What `erase_in_order` did: erased now, or queued behind the messages accepted before."""

    erased: list[erasure.ErasureResult] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # the request ids a worker will record
    waiting_before: int = 0  # messages accepted before the queued erasures and not applied yet


def erase_in_order(
    queries: list[erasure.PersonQuery], *, source: str, requested_by: str = "", time_budget: float | None = None
) -> InOrder:
    """Erase people after every Firehose message accepted before now, waiting at most `time_budget` seconds.

    The messages waiting are applied first (they may store the person again); what the budget
    (default `ERASURE_WAIT_SECONDS`) leaves is for a worker, and the erasures queue behind it.
    """
    budget = settings.ERASURE_WAIT_SECONDS if time_budget is None else time_budget
    _, more = apply_pending(time_budget=budget, exclusive=True)
    if not more:
        with transaction.atomic():
            # In the place of a barrier: no applier's batch runs until the erasure commits.
            applier_locks.every_shard()
            return InOrder(erased=[erasure.erase(q, source=source, requested_by=requested_by) for q in queries])
    waiting, _ = FirehoseMessage.waiting()
    queued = [queued_erasure.queue(q, source=source, requested_by=requested_by) for q in queries]
    wakeup.wake_message_applier()
    return InOrder(queued=queued, waiting_before=waiting)
