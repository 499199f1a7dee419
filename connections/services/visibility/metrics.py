"""The figures /metrics exports, read from the database at scrape time (SPEC section 13).

Nothing is counted in process memory: any web process answers a scrape with the same
values, whichever process (web, worker, command) did the work, and a restart loses nothing.
About ten small queries, each over an index or a small table; the forwarding log is read
only for the few minutes after the tallies' mark (see `tallies`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TypeVar

from django.db.models import Count, Min, OuterRef, Subquery
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from connections.models import (
    Connection,
    ConnectionStateChange,
    Delivery,
    ErasureCall,
    FirehoseMessage,
    Forward,
    ImportRun,
    ResyncRun,
)
from connections.services.visibility import firehose_counts, tallies

PREFIX = "cioaudience"
CONNECTION_LABELS = ["connection_id", "connection"]
F = TypeVar("F", GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily)
FINAL_STATUSES = [s for s in Delivery.Status.values if s != Delivery.Status.PENDING]


class DatabaseCollector(Collector):
    """Yields every metric family from the database; registered in a registry of its own per scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        connections = list(Connection.objects.order_by("pk").values_list("pk", "name", "state", "last_success_at"))
        labels = {pk: [str(pk), name] for pk, name, _state, _success in connections}
        yield from _states(connections, labels)
        yield from _backlog(labels, now)
        yield from _deliveries(labels)
        yield _state_changes(labels)
        yield _firehose()
        yield from _firehose_pending(now)
        yield from _erasures_waiting(now)
        yield from _resyncs(labels)
        yield from _imports()


def _per_connection(kind: type[F], name: str, documentation: str, *labels: str) -> F:
    """A metric family labelled by connection (and by `labels` after it)."""
    return kind(f"{PREFIX}_{name}", documentation, labels=[*CONNECTION_LABELS, *labels])


def _states(connections: list[tuple[int, str, str, datetime | None]], labels: dict[int, list[str]]) -> Iterator[Metric]:
    state = _per_connection(
        GaugeMetricFamily,
        "connection_state",
        "1 for the state each connection is in (active, backing_off, faulted), 0 for the others.",
        "state",
    )
    success = _per_connection(
        GaugeMetricFamily,
        "connection_last_success_timestamp_seconds",
        "When Customer.io last accepted an update for the connection (Unix time); absent if never.",
    )
    for pk, _name, current, last_success in connections:
        for value in Connection.State.values:
            state.add_metric([*labels[pk], value], 1.0 if value == current else 0.0)
        if last_success is not None:
            success.add_metric(labels[pk], last_success.timestamp())
    yield state
    yield success


def _backlog(labels: dict[int, list[str]], now: datetime) -> Iterator[Metric]:
    size = _per_connection(
        GaugeMetricFamily,
        "backlog_forwards",
        "Profiles waiting to be sent to the connection (outbox rows, retries in backoff included).",
    )
    age = _per_connection(
        GaugeMetricFamily,
        "backlog_oldest_age_seconds",
        "Age of the oldest change still waiting to be sent to the connection; 0 when nothing waits.",
    )
    rows = {
        row["connection_id"]: row
        for row in Forward.objects.values("connection_id").annotate(n=Count("pk"), oldest=Min("created_at")).order_by()
    }
    for pk, label in labels.items():
        row = rows.get(pk)
        size.add_metric(label, row["n"] if row else 0)
        age.add_metric(label, max(0.0, (now - row["oldest"]).total_seconds()) if row else 0.0)
    yield size
    yield age


def _deliveries(labels: dict[int, list[str]]) -> Iterator[Metric]:
    totals = tallies.current_totals()
    deliveries = _per_connection(
        CounterMetricFamily,
        "deliveries",
        "Forwarding-log rows (one per profile per attempt) by final status: succeeded, failed, retrying "
        "(a transient failure, sent again later), skipped, cancelled.",
        "status",
    )
    pending = _per_connection(
        GaugeMetricFamily,
        "deliveries_pending",
        "Forwarding-log rows whose request is in flight (sent, Customer.io has not answered yet).",
    )
    latency = _per_connection(
        HistogramMetricFamily,
        "request_duration_seconds",
        "Duration of requests to Customer.io (one per request, however many profiles it carried).",
    )
    for pk, label in labels.items():
        counts = totals.statuses.get(pk, {})
        for status in FINAL_STATUSES:
            deliveries.add_metric([*label, status], counts.get(status, 0))
        pending.add_metric(label, counts.get(Delivery.Status.PENDING, 0))
        histogram = totals.latency.get(pk) or tallies.Latency()
        buckets = [(tallies.bound_key(bound), count) for bound, count in histogram.cumulative()]
        latency.add_metric(label, buckets=buckets, sum_value=histogram.total)
    yield deliveries
    yield pending
    yield latency


def _state_changes(labels: dict[int, list[str]]) -> Metric:
    family = _per_connection(
        CounterMetricFamily,
        "connection_state_changes",
        "Transitions of the connection's circuit breaker, by the state entered.",
        "to_state",
    )
    counted = {
        (row["connection_id"], row["to_state"]): row["n"]
        for row in ConnectionStateChange.objects.values("connection_id", "to_state").annotate(n=Count("pk")).order_by()
    }
    for pk, label in labels.items():
        for state in Connection.State.values:
            family.add_metric([*label, state], counted.get((pk, state), 0))
    return family


def _firehose() -> Metric:
    family = CounterMetricFamily(
        f"{PREFIX}_firehose_requests",
        "Requests to the Firehose endpoint by message type and outcome (accepted, invalid, unauthorized, "
        "too_large, error).",
        labels=["type", "outcome"],
    )
    for (message_type, outcome), n in sorted(firehose_counts.counts().items()):
        family.add_metric([message_type, outcome], n)
    return family


def _firehose_pending(now: datetime) -> Iterator[Metric]:
    count, oldest = FirehoseMessage.waiting()
    yield GaugeMetricFamily(
        f"{PREFIX}_firehose_pending_messages",
        "Firehose messages accepted and stored, waiting for a worker to apply them (FIREHOSE_APPLY=worker).",
        value=count,
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_firehose_pending_oldest_age_seconds",
        "How long the oldest of them has waited; 0 when none waits.",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )


def _erasures_waiting(now: datetime) -> Iterator[Metric]:
    count = GaugeMetricFamily(
        f"{PREFIX}_erasures_waiting",
        "Erasures not finished, by stage: 'here' (a DSR or a queued admin/command erasure waiting for the "
        "Firehose applier), 'customerio' (suppress/delete calls Customer.io has not accepted yet).",
        labels=["stage"],
    )
    age = GaugeMetricFamily(
        f"{PREFIX}_erasures_waiting_oldest_age_seconds",
        "How long the oldest erasure at that stage has waited since it was asked for (here) or carried out "
        "here (customerio); 0 when none waits.",
        labels=["stage"],
    )
    for stage, (n, oldest) in (
        ("here", FirehoseMessage.waiting(FirehoseMessage.ERASURE_TYPES)),
        ("customerio", ErasureCall.waiting()),
    ):
        count.add_metric([stage], n)
        age.add_metric([stage], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    yield count
    yield age


def _resyncs(labels: dict[int, list[str]]) -> Iterator[Metric]:
    running = _per_connection(
        GaugeMetricFamily,
        "resync_running",
        "1 while the connection's latest resync or large activation is still running (queuing or, streamed, sending).",
    )
    profiles = _per_connection(
        GaugeMetricFamily,
        "resync_profiles",
        "The connection's latest resync or large activation: profiles in all (total) and done so far (queued: "
        "queued for the workers, or, streamed on v2, sent or settled).",
        "stage",
    )
    runs = ResyncRun.objects.filter(connection=OuterRef("pk"), lane_of=None)  # a lane's progress counts in its run's
    latest = Subquery(runs.order_by("-pk").values("pk")[:1])
    ids = [i for i in Connection.objects.annotate(latest=latest).values_list("latest", flat=True) if i is not None]
    for run in ResyncRun.objects.filter(pk__in=ids).values("connection_id", "status", "total", "queued"):
        label = labels.get(run["connection_id"])
        if label is None:  # a connection created since the first query
            continue
        running.add_metric(label, 1.0 if run["status"] == ResyncRun.Status.RUNNING else 0.0)
        profiles.add_metric([*label, "total"], run["total"])
        profiles.add_metric([*label, "queued"], run["queued"])
    yield running
    yield profiles


def _imports() -> Iterator[Metric]:
    running = GaugeMetricFamily(f"{PREFIX}_imports_running", "import_memberships runs in progress.")
    lines = GaugeMetricFamily(
        f"{PREFIX}_import_lines",
        "Each running import: data lines in the file (total, once counted), applied (done) and skipped.",
        labels=["import_id", "audience_id", "stage"],
    )
    runs = list(
        ImportRun.objects.filter(status=ImportRun.Status.RUNNING).values(
            "pk", "audience__audience_id", "lines_total", "lines_done", "lines_skipped"
        )
    )
    running.add_metric([], len(runs))
    for run in runs:
        label = [str(run["pk"]), str(run["audience__audience_id"])]
        if run["lines_total"] is not None:
            lines.add_metric([*label, "total"], run["lines_total"])
        lines.add_metric([*label, "done"], run["lines_done"])
        lines.add_metric([*label, "skipped"], run["lines_skipped"])
    yield running
    yield lines


def registry() -> CollectorRegistry:
    """A registry holding only the database's figures (no per-process ones, which would differ by process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return registry
