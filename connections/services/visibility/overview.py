"""The admin home's overview: every connection at a glance, what needs attention, recent activity.

A handful of grouped queries whatever the size of the log: per connection its backlog (the
outbox's (connection, due_at) index) and 24-hour outcomes (the log's (connection, status,
-created_at) index), then the latest resyncs and imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone

from connections.models import AlertEpisode, Connection, ErasureCall, FirehoseMessage, Forward, ImportRun, ResyncRun
from connections.services.visibility import figures

# Firehose messages stored for a worker (FIREHOSE_APPLY=worker) are applied within a second or so;
# one waiting longer than this means no worker applies them.
MESSAGES_WAITING_ATTENTION_SECONDS = 60
ACTIVITY_ITEMS = 8


@dataclass(frozen=True)
class ConnectionRow:
    connection: Connection
    backlog: int
    oldest_waiting: datetime | None
    outcomes: figures.DeliveryCounts
    open_alerts: tuple[str, ...]  # AlertEpisode kinds

    @property
    def failure_rate(self) -> float | None:
        return self.outcomes.failure_rate


@dataclass(frozen=True)
class Attention:
    """Something a person should look at, with where to look."""

    connection: Connection
    what: str
    level: str  # "bad" or "warn"
    go_to: str  # "connection" (its page) or "failures" (its failed deliveries in the log)
    outcomes: figures.DeliveryCounts | None = None  # for "failures": the last 24 hours' attempts


@dataclass(frozen=True)
class Activity:
    kind: str  # "resync", "import", ... (what the row is: the template words it)
    at: datetime
    item: object  # the run


@dataclass(frozen=True)
class MessagesWaiting:
    """Firehose messages accepted and not applied, the oldest past MESSAGES_WAITING_ATTENTION_SECONDS."""

    count: int
    oldest: datetime


@dataclass(frozen=True)
class ErasuresWaiting:
    """Erasures not finished: to carry out here (a DSR or a queued erasure) and calls to Customer.io."""

    here: int
    here_oldest: datetime | None
    calls: int
    calls_oldest: datetime | None
    level: str  # "bad" once one has waited MESSAGES_WAITING_ATTENTION_SECONDS, else "warn"


@dataclass
class Overview:
    rows: list[ConnectionRow] = field(default_factory=list)
    attention: list[Attention] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)
    messages_waiting: MessagesWaiting | None = None
    erasures_waiting: ErasuresWaiting | None = None


def recent_resyncs(limit: int) -> list[Activity]:
    runs = ResyncRun.objects.filter(lane_of=None).select_related("connection", "audience").order_by("-pk")[:limit]
    return [Activity("resync", run.updated_at, run) for run in runs]


def recent_imports(limit: int) -> list[Activity]:
    runs = ImportRun.objects.select_related("audience").order_by("-started_at")[:limit]
    return [Activity("import", run.updated_at, run) for run in runs]


# Where the "Recent activity" panel comes from: one function per kind of run, newest first.
# Erasures (SPEC section 12) join with a `recent_erasures(limit)` here and a line in the template.
ACTIVITY_SOURCES: list[Callable[[int], list[Activity]]] = [recent_resyncs, recent_imports]


def build(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    connections = list(Connection.objects.defer(*Connection.SECRET_FIELDS).order_by("name"))
    ids = [c.pk for c in connections]
    waiting = {
        row["connection_id"]: row
        for row in Forward.objects.filter(connection_id__in=ids)
        .values("connection_id")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    }
    outcomes = figures.recent_outcomes(ids, now=now)
    alerts: dict[int, list[str]] = {}
    for connection_id, kind in AlertEpisode.objects.filter(ended_at__isnull=True).values_list("connection_id", "kind"):
        alerts.setdefault(connection_id, []).append(kind)
    overview = Overview()
    for connection in connections:
        row = ConnectionRow(
            connection=connection,
            backlog=waiting.get(connection.pk, {}).get("n", 0),
            oldest_waiting=waiting.get(connection.pk, {}).get("oldest"),
            outcomes=outcomes.get(connection.pk, figures.DeliveryCounts()),
            open_alerts=tuple(sorted(alerts.get(connection.pk, ()))),
        )
        overview.rows.append(row)
        overview.attention.extend(needs_attention(row))
    activity = [item for source in ACTIVITY_SOURCES for item in source(ACTIVITY_ITEMS)]
    overview.activity = sorted(activity, key=lambda a: a.at, reverse=True)[:ACTIVITY_ITEMS]
    overview.messages_waiting = messages_waiting(now)
    overview.erasures_waiting = erasures_waiting(now)
    return overview


def erasures_waiting(now: datetime) -> ErasuresWaiting | None:
    """Every erasure not finished, whatever its age: an erasure is owed to a person, so it is always shown."""
    here, here_oldest = FirehoseMessage.waiting(FirehoseMessage.ERASURE_TYPES)
    calls, calls_oldest = ErasureCall.waiting()
    if not here and not calls:
        return None
    oldest = min(moment for moment in (here_oldest, calls_oldest) if moment is not None)
    level = "bad" if (now - oldest).total_seconds() >= MESSAGES_WAITING_ATTENTION_SECONDS else "warn"
    return ErasuresWaiting(here, here_oldest, calls, calls_oldest, level)


def messages_waiting(now: datetime) -> MessagesWaiting | None:
    count, oldest = FirehoseMessage.waiting()
    if oldest is None or (now - oldest).total_seconds() < MESSAGES_WAITING_ATTENTION_SECONDS:
        return None
    return MessagesWaiting(count=count, oldest=oldest)


def needs_attention(row: ConnectionRow) -> list[Attention]:
    """What about this connection a person should act on, worst first."""
    connection = row.connection
    found = []
    if connection.state == Connection.State.FAULTED:
        found.append(Attention(connection, "faulted", "bad", "connection"))
    elif connection.state == Connection.State.BACKING_OFF:
        found.append(Attention(connection, "backing_off", "warn", "connection"))
    if AlertEpisode.Kind.BACKLOG in row.open_alerts:
        found.append(Attention(connection, "backlog", "warn", "connection"))
    outcomes = row.outcomes
    # A faulted connection's failures are the fault itself: said once, above. A few failures
    # (figures.FAILURES_ALARM) are not a problem of the connection: the table shows them as a count.
    if connection.state != Connection.State.FAULTED and outcomes.alarming:
        level = "bad" if (outcomes.failure_rate or 0) >= 0.5 else "warn"
        found.append(Attention(connection, "failures", level, "failures", outcomes))
    return found
