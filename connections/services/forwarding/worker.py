"""The worker path: claim pending forwards, send them, record every outcome.

    claims.claim (SKIP LOCKED + conditional UPDATE, a renewed lease)
      -> payloads.plan (the current database state, coalesced per profile)
      -> delivery_log.log_pending (log rows written before the call; a profile erased since the
         plan is dropped here, the last check before its request: see erasure/local.py)
      -> breaker checks (paused? backing off?) -> transports (v2 batches or v1 per person, each
         through the rate limiter) -> Customer.io client -> segment_sending (manual segments)
      -> delivery_log.record_result (log rows completed; outbox rows deleted or put back)
      -> connection.transitions.note_results (the breaker, the pause, a fault, the history)

While a connection is `backing_off`, `forward_pending` sends one probe (a real pending
request, or the region check when nothing is pending) when it is due, and nothing else.
"""

from __future__ import annotations

import time
from datetime import datetime

from django.utils import timezone

from connections.customerio.client import Outcome
from connections.models import Connection, Forward
from connections.services.connection import breaker, clients
from connections.services.connection import transitions as connection_state
from connections.services.forwarding import claims, flood_hold, transports
from connections.services.forwarding.claims import unclaimed
from connections.services.forwarding.delivery_log import ForwardReport, log_pending, record_result, record_unsent
from connections.services.forwarding.payloads import ClaimedRow, plan
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
        size = transports.for_connection(connection).claim_size(probe=False)
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
    token, rows = claims.claim(connection.pk, transports.for_connection(connection).claim_size(probe=True))
    report = _send_or_release(connection, token, rows, probe=True) if rows else ForwardReport(backing_off=True)
    if report.requests == 0:
        # Nothing could be sent (rows wait out their backoff, or none was sendable): ask
        # Customer.io something harmless instead, so that a recovery is still noticed.
        result = clients.track_client(connection).account_region().result
        connection_state.note_results(connection, [result], probe=True)
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
    """Send a claim's profiles, group by group (as its transport groups them: transports.py).

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
    transport = transports.for_connection(connection)
    groups = transport.groups(sendable, probe=probe)

    for position, group in enumerate(groups):
        if position and (probe or _must_stop(connection, report)):
            claims.requeue(token, [i for later in groups[position:] for p in later for i in p.row_ids])
            break
        transport.before_group(connection)
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
        requests = transport.send(client, connection, group)
        # Manual segments once the person exists; a segment request that must be retried keeps the
        # profile's rows in the outbox, identify included (both are idempotent).
        identified = [
            p for r in requests for p, outcome, _ in r.people if outcome is Outcome.SUCCEEDED and p.segment_operations
        ]
        again = send_segment_operations(connection, client, identified, report) if identified else set()
        for request in requests:
            record_result(connection, token, logged, request.result, request.people, report, again)
        report.requests += len(requests)
        report.sent += len(group)
        connection_state.note_results(connection, [r.result for r in requests], probe=probe)
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
