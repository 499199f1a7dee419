"""A connection's health in numbers, for the admin: deliveries per hour, recent failure rate, what is pending.

Each figure is one aggregate query over an indexed range: Delivery's (connection, -created_at)
index, the outbox's (connection, due_at). Counts that could reach millions (the outbox during a
resync, a resync's deliveries) stop at `COUNT_CAP` and say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from connections.models import BatchDelivery, Delivery, Forward, ResyncRun
from connections.services.resync import runs as resync

CHART_HOURS = 48
FAILURE_RATE_WINDOW = timedelta(hours=24)
COUNT_CAP = 100_000

SUCCEEDED = Delivery.Status.SUCCEEDED
FAILED = Delivery.Status.FAILED
# Attempts that ended without Customer.io taking the update: for good, or to be retried.
FAILED_ATTEMPT = (Delivery.Status.FAILED, Delivery.Status.RETRYING)


@dataclass(frozen=True)
class BoundedCount:
    """A count that stopped at a cap: `capped` means "at least `value`"."""

    value: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def bounded_count(queryset: QuerySet, cap: int = COUNT_CAP) -> BoundedCount:
    counted = queryset.order_by()[: cap + 1].count()
    return BoundedCount(cap, True) if counted > cap else BoundedCount(counted)


# Failed attempts are alarming (shown in red, listed under "needs attention") from this share up, and
# only once there are this many of them: 1 failure in 7 attempts is one person's bad data or a blip,
# not a broken connection, and is shown as a plain count.
FAILURE_RATE_ALARM = 0.10
FAILURES_ALARM = 5


@dataclass(frozen=True)
class DeliveryCounts:
    """Succeeded and failed delivery attempts (pending, skipped and cancelled ones are not attempts that ended)."""

    succeeded: int = 0
    failed: int = 0

    @property
    def attempts(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.attempts if self.attempts else None

    @property
    def failure_percent(self) -> str:
        """ "14%", "0.4%": the share of failed attempts, as a person reads it."""
        rate = self.failure_rate or 0.0
        return f"{rate:.0%}" if rate >= 0.1 or not rate else f"{rate:.1%}"

    @property
    def alarming(self) -> bool:
        rate = self.failure_rate
        return rate is not None and rate >= FAILURE_RATE_ALARM and self.failed >= FAILURES_ALARM

    @property
    def level(self) -> str:
        """ "bad" when alarming, "warn" for any other failure, "good" for none."""
        return "bad" if self.alarming else "warn" if self.failed else "good"


@dataclass(frozen=True)
class HourOfDeliveries:
    start: datetime  # aware, on the hour in UTC
    outcomes: DeliveryCounts
    is_current: bool = False  # the hour still running


def deliveries_per_hour(
    connection_id: int, *, hours: int = CHART_HOURS, now: datetime | None = None
) -> list[HourOfDeliveries]:
    """The last `hours` hours, oldest first, ending with the current one; hours without deliveries count zero.

    Hours are cut in UTC, so every bucket is one real hour whatever the viewer's time zone
    (a daylight-saving change never makes a 2-hour or a 0-hour bar); the chart labels them in local time.
    """
    now = now or timezone.now()
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    rows = (
        Delivery.objects.filter(
            connection_id=connection_id,
            created_at__gte=first,
            created_at__lt=current + timedelta(hours=1),
            status__in=(SUCCEEDED, *FAILED_ATTEMPT),
        )
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(
            succeeded=Count("pk", filter=Q(status=SUCCEEDED)), failed=Count("pk", filter=Q(status__in=FAILED_ATTEMPT))
        )
        .order_by()
    )
    by_hour = {row["hour"]: DeliveryCounts(row["succeeded"], row["failed"]) for row in rows}
    for hour, counts in _batch_people_per_hour(connection_id, first, current + timedelta(hours=1)).items():
        seen = by_hour.get(hour, DeliveryCounts())
        by_hour[hour] = DeliveryCounts(seen.succeeded + counts.succeeded, seen.failed + counts.failed)
    starts = [first + timedelta(hours=n) for n in range(hours)]
    return [HourOfDeliveries(start, by_hour.get(start, DeliveryCounts()), start == current) for start in starts]


def _batch_people_per_hour(connection_id: int, since: datetime, until: datetime) -> dict[datetime, DeliveryCounts]:
    """The people of the connection's streamed identify requests (activations, resyncs), by hour."""
    return _batch_people(
        [connection_id], since, until, lambda _, at: at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    )


def _batch_people(
    connection_ids: list[int], since: datetime, until: datetime | None, key: Callable[[int, datetime], Any]
) -> dict[Any, DeliveryCounts]:
    """Streamed identify requests' people, as the log's rows count: accepted, or an attempt that failed
    (a rejected item, a failed or retried request), summed by `key(connection_id, created_at)`.
    A row per thousand people: a 10,000,000-member activation is 10,000 rows."""
    counts: dict[Any, list[int]] = {}
    rows = BatchDelivery.objects.filter(
        connection_id__in=connection_ids,
        action="identify",
        created_at__gte=since,
        status__in=(SUCCEEDED, BatchDelivery.Status.PARTIAL, *FAILED_ATTEMPT),
    )
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    for connection_id, created_at, status, people, item_errors in rows.values_list(
        "connection_id", "created_at", "status", "people", "item_errors"
    ).iterator():
        failed = people if status in FAILED_ATTEMPT else len(item_errors or {})
        tally = counts.setdefault(key(connection_id, created_at), [0, 0])
        tally[0] += people - failed
        tally[1] += failed
    return {k: DeliveryCounts(ok, failed) for k, (ok, failed) in counts.items()}


def recent_outcomes(
    connection_ids: Iterable[int], *, window: timedelta = FAILURE_RATE_WINDOW, now: datetime | None = None
) -> dict[int, DeliveryCounts]:
    """Each connection's attempts in the last `window`: one grouped query per log over those connections only
    (a streamed request counts as its people)."""
    ids = list(connection_ids)
    if not ids:
        return {}
    since = (now or timezone.now()) - window
    rows = (
        Delivery.objects.filter(connection_id__in=ids, created_at__gte=since, status__in=(SUCCEEDED, *FAILED_ATTEMPT))
        .values("connection_id")
        .annotate(
            succeeded=Count("pk", filter=Q(status=SUCCEEDED)), failed=Count("pk", filter=Q(status__in=FAILED_ATTEMPT))
        )
        .order_by()
    )
    found = {row["connection_id"]: DeliveryCounts(row["succeeded"], row["failed"]) for row in rows}
    for connection_id, counts in _batch_people(ids, since, None, lambda pk, _: pk).items():
        seen = found.get(connection_id, DeliveryCounts())
        found[connection_id] = DeliveryCounts(seen.succeeded + counts.succeeded, seen.failed + counts.failed)
    return found


@dataclass(frozen=True)
class Backlog:
    """What waits in the outbox for a connection: how many rows, and since when the oldest."""

    count: BoundedCount
    oldest: datetime | None = None

    @property
    def oldest_age(self) -> timedelta | None:
        return None if self.oldest is None else timezone.now() - self.oldest


def backlogs(connection_ids: Iterable[int]) -> dict[int, Backlog]:
    """Each connection's backlog: one grouped query over the (connection, due_at) index."""
    ids = list(connection_ids)
    if not ids:
        return {}
    rows = (
        Forward.objects.filter(connection_id__in=ids)
        .values("connection_id")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    )
    return {row["connection_id"]: Backlog(BoundedCount(row["n"]), row["oldest"]) for row in rows}


def backlog_of(connection_id: int) -> Backlog:
    rows = Forward.objects.filter(connection_id=connection_id)
    return Backlog(bounded_count(rows), rows.aggregate(oldest=Min("created_at"))["oldest"])


@dataclass(frozen=True)
class ResyncProgress:
    run: ResyncRun
    to_send: BoundedCount  # the run's profiles still in the outbox
    succeeded: BoundedCount  # resync deliveries since the run started, by final outcome
    failed: int

    @property
    def percent_queued(self) -> int:
        if not self.run.total:
            return 100
        return min(100, self.run.queued * 100 // self.run.total)

    @property
    def is_active(self) -> bool:
        """Still queuing, or queued profiles not all sent yet: the page keeps refreshing."""
        return self.run.status == ResyncRun.Status.RUNNING or self.to_send.value > 0


def latest_resync(connection_id: int) -> ResyncProgress | None:
    run = (
        ResyncRun.objects.filter(connection_id=connection_id, reason=Forward.Reason.RESYNC, lane_of=None)
        .select_related("audience")
        .order_by("-pk")
        .first()
    )
    if run is None:
        return None
    if BatchDelivery.objects.filter(run_id=run.pk).exists():
        # Streamed (issue 29): nothing waits in the outbox; what is left is past the checkpoint, and
        # the people sent are counted from the run's requests (a row per thousand).
        sent = resync.outcomes(run)
        left = 0 if run.status == ResyncRun.Status.DONE else max(0, run.total - run.queued)
        return ResyncProgress(
            run=run, to_send=BoundedCount(left), succeeded=BoundedCount(sent.succeeded), failed=sent.failed
        )
    to_send = bounded_count(
        Forward.objects.filter(connection_id=connection_id, reason=Forward.Reason.RESYNC, audience_id=run.audience_id)
    )
    # Attempts that will be retried are not final outcomes. At most COUNT_CAP + 1 rows are read.
    final = (
        Delivery.objects.filter(
            connection_id=connection_id, reason=Forward.Reason.RESYNC, created_at__gte=run.started_at
        )
        .filter(status__in=(SUCCEEDED, FAILED))
        .order_by()[: COUNT_CAP + 1]
    )
    counts = final.aggregate(
        succeeded=Count("pk", filter=Q(status=SUCCEEDED)), failed=Count("pk", filter=Q(status=FAILED))
    )
    capped = counts["succeeded"] + counts["failed"] > COUNT_CAP
    succeeded = BoundedCount(counts["succeeded"], capped)
    return ResyncProgress(run=run, to_send=to_send, succeeded=succeeded, failed=counts["failed"])
