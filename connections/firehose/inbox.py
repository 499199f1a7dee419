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
back and its messages stay pending; the next wake-up or the periodic sweep applies them.
"""

from __future__ import annotations

import logging
import time

from django.db import IntegrityError, OperationalError, transaction

from connections.firehose import ingest
from connections.firehose.messages import MessageError, decode_body, parse_message
from connections.models import FirehoseMessage
from connections.services import bulk

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
            FirehoseMessage.objects.filter(pending=True).order_by("id").values_list("id", "message_id", "body")[
                :batch_size
            ]
        )
        for _, message_id, body in rows:
            _apply_stored(message_id, body or "")
        if rows:
            FirehoseMessage.objects.filter(pk__any=[pk for pk, _, _ in rows]).update(pending=False, body=None)
    return len(rows)


def _take_applier_lock() -> None:
    db = bulk.database(FirehoseMessage)
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
    # SQLite: the transaction began IMMEDIATE (settings), holding the database's write lock.


def _apply_stored(message_id: str, body: str) -> None:
    """Apply one stored message whole, or (refused now) not at all.

    It was checked when accepted. What can refuse it now is what changed since: its connection
    deleted (an unknown Connection Key). The request was answered long ago, so that is logged.
    """
    try:
        message = parse_message(decode_body(body.encode()))
        if not isinstance(message, ingest.StoredMessage):
            raise MessageError("type", f"{message.envelope.type} is answered, never stored")
        with transaction.atomic():
            ingest.apply(message)
    except MessageError as refused:
        logger.warning("Firehose message %s was accepted but cannot be applied now: %s", message_id, refused)
