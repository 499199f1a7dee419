"""Firehose messages applied by a worker (FIREHOSE_APPLY=worker), in the order they were accepted.

The request checks a message as the request-time path would (its fields, its Connection Key),
records it with its answer and its body (`FirehoseMessage.pending`), answers, and wakes a worker
(`ingest.accept`). Here a worker applies what is pending, oldest first, a batch per
transaction, one applier at a time: on PostgreSQL a transaction-level advisory lock, on SQLite
the write lock its IMMEDIATE transactions take at BEGIN. So two messages about one person are
applied in the order they were answered, and a `dsr_processing_request` erases what the
messages before it stored. Each message is applied whole or not at all (a savepoint); its body
is cleared once applied, so personal data does not linger in the queue.

Nothing accepted is lost: a batch that fails (a deadlock, the database restarting) is rolled
back and its messages stay pending; the next wake-up or the periodic sweep applies them. A
message whose connection was deleted after it was accepted is applied all the same, less what
belonged to the connection (`ingest.apply`): a DSR still erases, a membership change still
reaches the other connections.

The admin's and `erase_person`'s erasures take their place in the same order
(`erase_in_order`): what waits is applied first, within `ERASURE_WAIT_SECONDS`; past that the
erasure is queued behind it (`queued_erasure`) and a worker carries it out in its turn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction

from connections.firehose import ingest, queued_erasure
from connections.firehose.messages import MessageError, decode_body, parse_message
from connections.models import FirehoseMessage
from connections.services.erasure import local as erasure
from connections.services.outbox import bulk, wakeup

logger = logging.getLogger(__name__)

BATCH_SIZE = 5  # messages per transaction: a flood's changes reach the outbox as a steady stream
ATTEMPTS = 3  # a batch rolled back by a deadlock or a concurrent insert is run again at once
LOCK_KEY = 0x63696F61  # pg_advisory_xact_lock's key for the applier ("cioa")


def has_pending() -> bool:
    return FirehoseMessage.objects.filter(pending=True).exists()


def apply_pending(*, time_budget: float | None = None, batch_size: int = BATCH_SIZE) -> tuple[int, bool]:
    """Apply pending messages oldest first until none is left or `time_budget` seconds have passed.

    Returns (messages applied, whether some are still pending because the budget ran out).
    """
    deadline = None if time_budget is None else time.monotonic() + time_budget
    applied = 0
    while True:
        count = _apply_batch_with_retries(batch_size)
        applied += count
        if count < batch_size:
            return applied, False
        if deadline is not None and time.monotonic() >= deadline:
            return applied, True


def _apply_batch_with_retries(batch_size: int) -> int:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _apply_batch(batch_size)
        except (IntegrityError, OperationalError) as exc:
            if isinstance(exc, OperationalError) and not ingest.is_transient(exc):
                raise
            if attempt == ATTEMPTS:
                raise
            logger.info("Firehose messages met a concurrent transaction (%s); applying them again", exc)
    raise AssertionError("unreachable")


def _apply_batch(batch_size: int) -> int:
    with transaction.atomic():
        _take_applier_lock()
        rows = list(
            FirehoseMessage.objects.filter(pending=True)
            .order_by("id")
            .values_list("id", "message_id", "message_type", "body")[:batch_size]
        )
        for _, message_id, message_type, body in rows:
            _apply_stored(message_id, message_type, body or "")
        if rows:
            FirehoseMessage.objects.filter(pk__any=[row[0] for row in rows]).update(pending=False, body=None)
    return len(rows)


def _take_applier_lock() -> None:
    db = bulk.database(FirehoseMessage)
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
    # SQLite: the transaction began IMMEDIATE (settings), holding the database's write lock.


def _apply_stored(message_id: str, message_type: str, body: str) -> None:
    """Apply one stored message whole (a savepoint).

    It was checked when it was accepted, and is applied now whatever changed since: a connection
    deleted meanwhile leaves out only what was the connection's (`ingest.apply`).
    """
    with transaction.atomic():
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
    _, more = apply_pending(time_budget=budget)
    if not more:
        return InOrder(erased=[erasure.erase(q, source=source, requested_by=requested_by) for q in queries])
    waiting, _ = FirehoseMessage.waiting()
    queued = [queued_erasure.queue(q, source=source, requested_by=requested_by) for q in queries]
    wakeup.wake_message_applier()
    return InOrder(queued=queued, waiting_before=waiting)
