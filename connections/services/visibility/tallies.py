"""Deliveries by status and request latency as running totals, so /metrics never counts the whole log.

The forwarding log holds millions of rows and is pruned daily; Prometheus wants counters that
only go up. So the totals are kept in two parts:

- `DeliveryTally` rows: every log row created up to `TallyMark.counted_until`, counted once by
  `advance()` (a beat task, every minute);
- the rows created after the mark, counted live at each scrape (a few minutes of log, read
  through the (-created_at) index).

The mark never passes a row that is still `pending` (its status will change) and stays
`SETTLE` behind the clock (a row is stamped before its transaction commits), so every row is
counted exactly once, in its final status. Rows pruned or erased later stay counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from connections.models import Delivery, DeliveryTally, TallyMark

# A row is stamped `created_at` a moment before its transaction commits; past this, every row
# stamped earlier is visible. Far more than a claim's inserts take.
SETTLE = timedelta(minutes=2)

# Upper bounds of the request-latency histogram buckets, in seconds (Customer.io answers in
# tens of milliseconds; the client gives up at CUSTOMERIO_TIMEOUT, 10 s by default).
LATENCY_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

MARK_PK = 1
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)  # the mark of a fresh database: nothing counted yet


@dataclass
class Latency:
    """A histogram of request durations: non-cumulative counts per bucket bound, and the sum in seconds."""

    counts: Counter[float] = field(default_factory=Counter)
    total: float = 0.0

    def add(self, seconds: float, requests: int = 1) -> None:
        bound = next(b for b in LATENCY_BUCKETS if seconds <= b)
        self.counts[bound] += requests
        self.total += seconds * requests

    def cumulative(self) -> list[tuple[float, int]]:
        running, out = 0, []
        for bound in LATENCY_BUCKETS:
            running += self.counts[bound]
            out.append((bound, running))
        return out

    @property
    def requests(self) -> int:
        return sum(self.counts.values())


@dataclass
class Totals:
    """Per connection id: log rows by status (pending ones included) and request latency."""

    statuses: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[int, Latency] = field(default_factory=lambda: defaultdict(Latency))

    def merge(self, other: Totals) -> None:
        for connection_id, counts in other.statuses.items():
            self.statuses[connection_id].update(counts)
        for connection_id, latency in other.latency.items():
            mine = self.latency[connection_id]
            mine.counts.update(latency.counts)
            mine.total += latency.total


def bound_key(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def count_rows(after: datetime | None, up_to: datetime | None = None) -> Totals:
    """Log rows with after < created_at <= up_to (either bound open when None): two grouped queries."""
    rows = Delivery.objects.all()
    if after is not None:
        rows = rows.filter(created_at__gt=after)
    if up_to is not None:
        rows = rows.filter(created_at__lte=up_to)
    totals = Totals()
    for row in rows.values("connection_id", "status").annotate(n=Count("pk")).order_by():
        totals.statuses[row["connection_id"]][row["status"]] += row["n"]
    for connection_id, duration_ms, requests in _request_durations(after, up_to):
        totals.latency[connection_id].add(duration_ms / 1000, requests)
    return totals


def _request_durations(after: datetime | None, up_to: datetime | None) -> list[tuple[int, int, int]]:
    """(connection id, duration in ms, requests) for the requests whose rows fall in the range.

    Every profile sent in one request shares its `request_id` and duration: a request counts
    once, not once per profile. Durations are whole milliseconds, so grouping by them keeps
    the answer to a few hundred rows however many requests there were.
    """
    table = Delivery._meta.db_table
    where, params = ["request_id IS NOT NULL", "duration_ms IS NOT NULL"], []
    if after is not None:
        where.append("created_at > %s")
        params.append(after)
    if up_to is not None:
        where.append("created_at <= %s")
        params.append(up_to)
    sql = (
        "SELECT connection_id, d, COUNT(*) FROM ("  # noqa: S608 - table name and fixed clauses only
        f"  SELECT connection_id, MAX(duration_ms) AS d FROM {table} WHERE {' AND '.join(where)}"
        "   GROUP BY connection_id, request_id"
        ") requests GROUP BY connection_id, d"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(c), int(d), int(n)) for c, d, n in cursor.fetchall()]


def advance(now: datetime | None = None) -> datetime | None:
    """Count the rows settled since the mark into the tallies and move the mark; returns the new mark.

    Concurrent calls take turns on the mark's row lock, so no row is counted twice.
    """
    now = now or timezone.now()
    with transaction.atomic():
        TallyMark.objects.get_or_create(pk=MARK_PK, defaults={"counted_until": BEGINNING})
        mark = TallyMark.objects.select_for_update().get(pk=MARK_PK)
        oldest_pending = Delivery.objects.filter(status=Delivery.Status.PENDING).aggregate(t=Min("created_at"))["t"]
        until = now - SETTLE
        if oldest_pending is not None:
            # Stop just before the oldest row whose status may still change.
            until = min(until, oldest_pending - timedelta(microseconds=1))
        if until <= mark.counted_until:
            return mark.counted_until
        _add(count_rows(mark.counted_until, until))
        mark.counted_until = until
        mark.save(update_fields=["counted_until", "updated_at"])
    return until


def _add(totals: Totals) -> None:
    for connection_id, counts in totals.statuses.items():
        for status, n in counts.items():
            _bump(connection_id, DeliveryTally.Kind.STATUS, status, n, 0.0)
    for connection_id, latency in totals.latency.items():
        for bound, n in latency.counts.items():
            if n:
                _bump(connection_id, DeliveryTally.Kind.LATENCY, bound_key(bound), n, 0.0)
        # The sum rides on the +Inf row: every request is in that bucket's cumulative count.
        _bump(connection_id, DeliveryTally.Kind.LATENCY, "+Inf", 0, latency.total)


def _bump(connection_id: int, kind: str, key: str, n: int, seconds: float) -> None:
    updated = DeliveryTally.objects.filter(connection_id=connection_id, kind=kind, key=key).update(
        count=F("count") + n, total=F("total") + seconds
    )
    if not updated:
        DeliveryTally.objects.create(connection_id=connection_id, kind=kind, key=key, count=n, total=seconds)


def current_totals() -> Totals:
    """Everything counted so far: the tallies plus the rows after the mark (read at scrape time)."""
    for _attempt in range(5):
        mark = counted_until()
        tallied = _tallied()
        # The mark and the tallies move together in one transaction; a scrape reading them in two
        # statements may fall between. Read again until the mark held still around the tallies.
        if counted_until() == mark:
            break
    tallied.merge(count_rows(mark))
    return tallied


def counted_until() -> datetime | None:
    return TallyMark.objects.filter(pk=MARK_PK).values_list("counted_until", flat=True).first()


def _tallied() -> Totals:
    totals = Totals()
    # Rows deleted with their connection (cascade) leave no tally behind either.
    for connection_id, kind, key, n, seconds in DeliveryTally.objects.values_list(
        "connection_id", "kind", "key", "count", "total"
    ):
        if kind == DeliveryTally.Kind.STATUS:
            totals.statuses[connection_id][key] += n
        else:
            latency = totals.latency[connection_id]
            latency.counts[float(key)] += n  # float("+Inf") is inf
            latency.total += seconds
    return totals
