"""Keeping the forwarding log to a size: old `Delivery` rows are deleted in small batches.

Each batch is its own short transaction deleting at most `batch_size` rows by primary key,
so pruning millions of rows never holds a long lock on the table the workers write to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Delivery

BATCH_SIZE = 5000
_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: int
    batches: int


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
    deleted = batches = 0
    while True:
        with transaction.atomic():
            # Oldest first through the created_at index: each batch finds its rows at once,
            # and the last (empty) look-up is as cheap as the others.
            ids = list(prunable(cutoff).order_by("created_at").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = Delivery.objects.filter(id__in=ids).delete()
        deleted += count
        batches += 1
        if on_batch is not None:
            on_batch(count)
    return PruneResult(cutoff=cutoff, deleted=deleted, batches=batches)
