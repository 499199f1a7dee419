"""The worker path: claim pending forwards, send them, record every outcome.

    claims.claim (SKIP LOCKED + conditional UPDATE, a renewed lease)
      -> payloads.plan (the current database state, coalesced per profile)
      -> outcomes.log_pending (log rows written before the call; a profile erased since the plan
         is dropped here, the last check before its request: see services/erasure.py)
      -> breaker checks (paused? backing off?) -> rate limiter -> Customer.io client
      -> outcomes.record_result (log rows completed; outbox rows deleted or put back)
      -> breaker.record (the run of failures, the pause, the breaker's state)

While a connection is `backing_off`, `forward_pending` sends one probe (a real pending
request, or the region check when nothing is pending) when it is due, and nothing else.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from connections.customerio import ratelimit
from connections.customerio.client import CustomerIOClient, Outcome, SendResult
from connections.customerio.limits import pack_v2_batches, v2_action
from connections.models import Connection, Forward
from connections.services.connection import breaker, clients
from connections.services.connection import transitions as connection_state
from connections.services.forwarding import claims, flood_hold
from connections.services.forwarding.claims import unclaimed
from connections.services.forwarding.delivery_log import ForwardReport, log_pending, record_result, record_unsent
from connections.services.forwarding.payloads import ClaimedRow, Planned, plan
from connections.services.forwarding.segment_sending import send_segment_operations
from connections.services.outbox import wakeup

__all__ = ["ForwardReport", "forward_pending", "send_claimed"]


def forward_pending(
    connection_id: int,
    *,
    time_budget: float | None = None,
    hold: bool = False,
    held_until: datetime | None = None,
) -> ForwardReport:
    """Send what is due for a connection until nothing is left, the breaker or a pause stops it,
    or the time budget is spent.

    With `hold` (the worker task), a flood's changes wait until they pause (`flood_hold`): the
    report says `held`, and `come_back_at` when this caller must return; `held_until` is the
    hold a returning caller was scheduled for.
    """
    started = time.monotonic()
    report = ForwardReport()
    while True:
        connection = Connection.objects.filter(pk=connection_id).first()
        if connection is None:
            break
        if connection.state == Connection.State.FAULTED:
            report.faulted = True
            break
        if paused := breaker.seconds_paused(connection):
            report.paused_for = paused
            break
        if connection.state == Connection.State.BACKING_OFF:
            if not breaker.take_probe_slot(connection):
                report.backing_off = True
                break
            report.add(_probe(connection))
            continue  # closed: drain at the full rate; still open: the next turn stops
        if hold:
            seconds, report.come_back_at = flood_hold.hold(connection_id, held_until)
            if seconds > 0:
                report.held = True
                break
        size = settings.FORWARD_BATCH_SIZE
        if connection.transport == Connection.Transport.V1:
            # One request per profile, sent in turn: a smaller claim keeps each payload close
            # to the moment it is sent and leaves the rest to other threads and workers.
            size = min(size, settings.FORWARD_V1_CLAIM_SIZE)
        token, rows = claims.claim(connection_id, size)
        if not rows:
            break
        if hold and len({r.profile_id for r in rows}) >= size:
            # A full claim: more is probably due (a flood just released, a backlog). Another worker
            # claims the next batch while this one sends; it ends at once if nothing is left.
            wakeup.forward_now(connection_id)
        round_report = _send_or_release(connection, token, rows)
        report.add(round_report)
        if report.stopped or (time_budget is not None and time.monotonic() - started > time_budget):
            break
        if round_report.retrying and not round_report.succeeded:
            # Customer.io is failing: leave the rest to the task's next turn (after the backoff)
            # rather than claiming again at once, whatever the configured backoff.
            break
    report.next_due_in = seconds_until_next_due(connection_id)
    return report


def _send_or_release(connection: Connection, token: str, rows: list[ClaimedRow], **options: bool) -> ForwardReport:
    try:
        return send_claimed(connection, token, rows, **options)
    except BaseException:
        # Give the rows back at once rather than when the lease runs out.
        claims.release(token)
        raise


def _probe(connection: Connection) -> ForwardReport:
    """One request while the breaker is open: a real pending one, so that a recovery is used at once."""
    size = 1 if connection.transport == Connection.Transport.V1 else settings.FORWARD_BATCH_SIZE
    token, rows = claims.claim(connection.pk, size)
    report = _send_or_release(connection, token, rows, probe=True) if rows else ForwardReport(backing_off=True)
    if report.requests == 0:
        # Nothing could be sent (rows wait out their backoff, or none was sendable): ask
        # Customer.io something harmless instead, so that a recovery is still noticed.
        result = clients.track_client(connection).account_region().result
        breaker.record(connection, [result], probe=True)
        report.requests = 1
        _note_probe_outcome(connection, report)
    return report


def seconds_until_next_due(connection_id: int) -> float | None:
    now = timezone.now()
    due = (
        Forward.objects.filter(connection_id=connection_id)
        .filter(unclaimed(now))
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    return None if due is None else max(0.0, (due - now).total_seconds())


def send_claimed(connection: Connection, token: str, rows: list[ClaimedRow], *, probe: bool = False) -> ForwardReport:
    """Send a claim's profiles, group by group (a v2 batch, or a few v1 requests at once).

    A probe sends its first request only. Before each group the connection is read again:
    once it is paused, backing off or faulted, the rest of the claim goes back untouched.
    """
    report = ForwardReport()
    planned = plan(connection, rows)
    record_unsent(connection, token, planned, report)
    sendable = [p for p in planned if p.sendable]
    if not sendable:
        return report
    client = clients.track_client(connection)
    v1 = connection.transport == Connection.Transport.V1
    if v1:
        size = 1 if probe else settings.FORWARD_V1_CONCURRENCY
        groups = [sendable[i : i + size] for i in range(0, len(sendable), size)]
    else:
        actions = [v2_action(p.identifier, p.attributes) for p in sendable]
        groups = [[sendable[i] for i in group] for group in pack_v2_batches(actions)]

    for position, group in enumerate(groups):
        if position and (probe or _must_stop(connection, report)):
            claims.requeue(token, [i for later in groups[position:] for p in later for i in p.row_ids])
            break
        if not v1:
            ratelimit.acquire(connection.pk, connection.rate_limit)
        ours = claims.renew(token, [i for p in group for i in p.row_ids])
        group = [p for p in group if set(p.row_ids) <= ours]
        if not group:
            continue
        logged = log_pending(connection, group)
        if len(logged) < len(group):  # erased since the plan: not sent, nothing of them logged
            gone = [p for p in group if p.profile_id not in logged]
            claims.delete(token, [i for p in gone for i in p.row_ids])  # went with the profile; any left over too
            report.cancelled += len(gone)
            group = [p for p in group if p.profile_id in logged]
            if not group:
                continue
        if v1:
            results = _send_v1(client, connection, group)
            outcomes = [(p, result.outcome, result.error) for p, result in zip(group, results, strict=True)]
        else:
            batch = client.batch_identify([(p.identifier, p.attributes) for p in group])
            results = [batch.overall]
            outcomes = [(p, item.outcome, item.error) for p, item in zip(group, batch.items, strict=True)]
        # Manual segments once the person exists; a segment request that must be retried keeps the
        # profile's rows in the outbox, identify included (both are idempotent).
        identified = [p for p, outcome, _ in outcomes if outcome is Outcome.SUCCEEDED and p.segment_operations]
        again = send_segment_operations(connection, client, identified, report) if identified else set()
        if v1:
            for (p, outcome, error), result in zip(outcomes, results, strict=True):
                record_result(connection, token, logged, result, [(p, outcome, error)], report, again)
        else:
            record_result(connection, token, logged, batch.overall, outcomes, report, again)
        report.requests += len(results)
        report.sent += len(group)
        connection_state.note_results(connection, results, probe=probe)
    if probe:
        _note_probe_outcome(connection, report)
    return report


def _must_stop(connection: Connection, report: ForwardReport) -> bool:
    """Re-read the connection between groups: another worker may have paused or tripped it."""
    fresh = Connection.objects.filter(pk=connection.pk).values("state", "paused_until").first()
    if fresh is None:
        return True
    connection.state, connection.paused_until = fresh["state"], fresh["paused_until"]
    report.faulted = report.faulted or connection.state == Connection.State.FAULTED
    report.backing_off = report.backing_off or connection.state == Connection.State.BACKING_OFF
    report.paused_for = max(report.paused_for, breaker.seconds_paused(connection))
    return report.stopped


def _note_probe_outcome(connection: Connection, report: ForwardReport) -> None:
    state = Connection.objects.filter(pk=connection.pk).values_list("state", flat=True).first()
    report.backing_off = state == Connection.State.BACKING_OFF


_v1_pool: ThreadPoolExecutor | None = None
_v1_pool_lock = threading.Lock()


def _send_v1(client: CustomerIOClient, connection: Connection, group: list[Planned]) -> list[SendResult]:
    """Send one v1 identify per profile, a few at once; results in the order of `group`."""
    global _v1_pool
    with _v1_pool_lock:
        if _v1_pool is None:
            _v1_pool = ThreadPoolExecutor(max_workers=settings.FORWARD_V1_CONCURRENCY, thread_name_prefix="cio-v1")

    def send(p: Planned) -> SendResult:
        ratelimit.acquire(connection.pk, connection.rate_limit)
        return client.identify(p.identifier, p.attributes)

    return list(_v1_pool.map(send, group))

