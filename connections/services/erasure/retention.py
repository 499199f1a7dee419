"""Keeping the forwarding log and the stored Firehose messages to a size: old rows are deleted in small batches.

Each batch is its own short transaction deleting at most `batch_size` rows by primary key,
so pruning millions of rows never holds a long lock on the table the workers write to.
The batch log (one row per streamed request) keeps the forwarding log's retention: on
PostgreSQL its whole months past it are dropped (erasure/partitions.py), and only the rows of
the month the cutoff falls in, and of the DEFAULT partition, are deleted row by row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import BatchDelivery, Delivery, FirehoseMessage
from connections.services.erasure import partitions

BATCH_SIZE = 5000
_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: int
    batches: int
    partitions_dropped: tuple[str, ...] = ()  # the batch log's whole months, dropped (PostgreSQL)


def parse_age(text: str) -> timedelta:
    """`30d`, `12h` or `90m` as a timedelta; anything else (or zero) is a ValueError that says why."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"expected a number of days, hours or minutes such as 30d, 12h or 90m, got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise ValueError(f"must be more than zero, got {text!r} (that would delete the whole log)")
    return timedelta(**{_UNITS[unit]: amount})


def prunable(cutoff: datetime) -> QuerySet[Delivery]:
    return Delivery.objects.filter(created_at__lt=cutoff)


def count_prunable(older_than: timedelta) -> tuple[datetime, int]:
    cutoff = timezone.now() - older_than
    return cutoff, prunable(cutoff).count()


def prune_deliveries(
    older_than: timedelta,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete deliveries created more than `older_than` ago, oldest first, `batch_size` rows per transaction."""
    cutoff = timezone.now() - older_than
    return _prune_in_batches(prunable(cutoff).order_by("created_at"), cutoff, batch_size, on_batch)


def prunable_batch_requests(cutoff: datetime) -> QuerySet[BatchDelivery]:
    return BatchDelivery.objects.filter(created_at__lt=cutoff)


def count_prunable_batch_requests(older_than: timedelta) -> tuple[datetime, int]:
    cutoff = timezone.now() - older_than
    return cutoff, prunable_batch_requests(cutoff).count()


def prune_batch_requests(
    older_than: timedelta,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete batch-log rows created more than `older_than` ago: whole months by DROP, the rest in batches."""
    cutoff = timezone.now() - older_than
    dropped = partitions.drop_month_partitions_before(cutoff)
    for _, rows in dropped:
        if on_batch is not None:
            on_batch(rows)
    rest = _prune_in_batches(prunable_batch_requests(cutoff).order_by("created_at"), cutoff, batch_size, on_batch)
    return PruneResult(
        cutoff=cutoff,
        deleted=sum(rows for _, rows in dropped) + rest.deleted,
        batches=len(dropped) + rest.batches,
        partitions_dropped=tuple(name for name, _ in dropped),
    )


def prunable_firehose_messages(cutoff: datetime) -> QuerySet[FirehoseMessage]:
    # A message still waiting for a worker (FIREHOSE_APPLY=worker) is kept, however old.
    return FirehoseMessage.objects.filter(received_at__lt=cutoff, pending=False)


def count_prunable_firehose_messages(older_than: timedelta) -> tuple[datetime, int]:
    cutoff = timezone.now() - older_than
    return cutoff, prunable_firehose_messages(cutoff).count()


def prune_firehose_messages(
    older_than: timedelta,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete stored Firehose messages received more than `older_than` ago.

    They exist for replay protection: a message id seen again within the window gets the first
    answer and changes nothing. Past it, mParticle has long stopped retrying (it retries for
    hours, not days), so an id that old arriving again is applied as new.
    """
    cutoff = timezone.now() - older_than
    return _prune_in_batches(prunable_firehose_messages(cutoff).order_by("received_at"), cutoff, batch_size, on_batch)


@dataclass(frozen=True)
class KeptRows:
    """A kind of row kept for a time: how the commands and the daily task name, count and prune it."""

    name: str  # the command and the log's word: "prune_deliveries"
    noun: str  # what is deleted, plural: "deliveries", "Firehose messages"
    dated: str  # the verb of its timestamp: "created", "received"
    retention_setting: str  # the days to keep, 0 for ever
    count_prunable: Callable[[timedelta], tuple[datetime, int]]
    prune: Callable[..., PruneResult]
    companion: KeptRows | None = None  # pruned with it, by the same command and setting


BATCH_REQUESTS = KeptRows(
    "prune_deliveries",
    "batch requests",
    "created",
    "DELIVERY_RETENTION_DAYS",
    count_prunable_batch_requests,
    prune_batch_requests,
)
DELIVERIES = KeptRows(
    "prune_deliveries",
    "deliveries",
    "created",
    "DELIVERY_RETENTION_DAYS",
    count_prunable,
    prune_deliveries,
    companion=BATCH_REQUESTS,
)
FIREHOSE_MESSAGES = KeptRows(
    "prune_firehose_messages",
    "Firehose messages",
    "received",
    "FIREHOSE_RETENTION_DAYS",
    count_prunable_firehose_messages,
    prune_firehose_messages,
)


def _prune_in_batches(
    oldest_first: QuerySet, cutoff: datetime, batch_size: int, on_batch: Callable[[int], None] | None
) -> PruneResult:
    deleted = batches = 0
    while True:
        with transaction.atomic():
            # Oldest first through the time index: each batch finds its rows at once,
            # and the last (empty) look-up is as cheap as the others.
            ids = list(oldest_first.values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = oldest_first.model.objects.filter(id__in=ids).delete()
        deleted += count
        batches += 1
        if on_batch is not None:
            on_batch(count)
    return PruneResult(cutoff=cutoff, deleted=deleted, batches=batches)
