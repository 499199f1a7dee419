"""Celery tasks: thin, IDs in, services called."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from connections.firehose import inbox
from connections.models import Audience, Connection
from connections.services.erasure import calls as erasure_calls
from connections.services.erasure import partitions, retention
from connections.services.forwarding import due
from connections.services.forwarding import worker as forwarding
from connections.services.outbox import queue as outbox
from connections.services.resync import backfill, background_resync
from connections.services.resync import runs as resync
from connections.services.visibility import alerts, tallies

log = logging.getLogger("cioaudience.tasks")

# A task sends for at most this long, then hands the rest to a fresh task so that one
# busy connection cannot hold a worker forever.
TIME_BUDGET_SECONDS = 60.0


@shared_task(ignore_result=True, acks_late=True)
def forward_connection(connection_id: int, held_until: str | None = None) -> None:
    """Send what is due for a connection; `held_until` (ISO time): this task is the one a flood's hold scheduled."""
    erasure_calls.send_due(connection_id)  # erasures first: a person erased must not wait behind a backlog
    report = forwarding.forward_pending(
        connection_id,
        time_budget=TIME_BUDGET_SECONDS,
        # Run in-process (`apply()`, eager mode) a task cannot come back later: it sends at once.
        hold=not forward_connection.request.is_eager,
        held_until=datetime.fromisoformat(held_until) if held_until else None,
    )
    if report.held:
        # Changes keep arriving: one task comes back when they pause (or at the hold's ceiling);
        # a task that did not take the hold leaves it to the one that did.
        if report.come_back_at is not None:
            countdown = max(0.0, (report.come_back_at - timezone.now()).total_seconds())
            forward_connection.apply_async((connection_id, report.come_back_at.isoformat()), countdown=countdown)
        return
    if report.sent == 0 or report.faulted or report.backing_off:
        # Nothing (more) for this task: new changes wake a worker, the breaker schedules its
        # probes, and the sweep finds the rest. A task that sent nothing must not reschedule
        # itself, or every wake-up during a long outage would become a chain of tasks.
        return
    next_in = max(report.paused_for, report.next_due_in) if report.next_due_in is not None else None
    if next_in is not None and next_in <= settings.SWEEP_INTERVAL_SECONDS:
        # More is due (the time budget ran out, a pause ends) or a retry is due soon: come back for it.
        forward_connection.apply_async((connection_id,), countdown=next_in)


@shared_task(ignore_result=True)
def sweep() -> int:
    """Re-enqueue connections with work no worker holds: a lost broker message loses nothing.

    Due forwards of an active connection that is not paused, and the due probe of a connection
    that is backing off. Log rows left `pending` by a worker that died are closed as `retrying`
    (their forwards are still in the outbox). A large audience's backfill that no worker holds
    (its task's message was lost, or its worker died) is handed to a worker again. Erasure calls
    of deleted connections are ended.
    """
    now = timezone.now()
    due.close_abandoned_log_rows(now)
    if orphans := outbox.remove_orphans():
        log.info("sweep removed forwards of deleted connections count=%d", orphans)
    if orphaned_calls := erasure_calls.end_orphaned():
        log.info("sweep ended erasure calls of deleted connections count=%d", orphaned_calls)
    connection_ids = due.connections_with_due_work(now)
    for connection_id in connection_ids:
        forward_connection.delay(connection_id)
    if connection_ids:
        log.info("sweep re-enqueued connections=%s", connection_ids)
    if resumed := backfill.resume_stalled():
        log.info("sweep resumed backfill runs=%s", resumed)
    if inbox.has_pending():
        apply_firehose_messages.delay()
        log.info("sweep re-enqueued the Firehose messages waiting to be applied")
    return len(connection_ids)


@shared_task(ignore_result=True, acks_late=True)
def apply_firehose_messages() -> int:
    """Apply the Firehose messages that requests stored (FIREHOSE_APPLY=worker), oldest first.

    A backlog larger than a batch starts another task, up to FIREHOSE_APPLIERS at once.
    """
    applied, more = inbox.apply_pending(time_budget=TIME_BUDGET_SECONDS, on_backlog=apply_firehose_messages.delay)
    if more:
        apply_firehose_messages.delay()  # a fresh task for the rest, as forwarding does
    return applied


@shared_task(ignore_result=True, acks_late=True)
def resync_connection(
    connection_id: int,
    audience_pk: int | None = None,
    time_budget: float = TIME_BUDGET_SECONDS,
    attempt: int = 1,
    lane: int | None = None,
) -> int:
    """Carry a resync on (the admin's "Resync" action), resuming an unfinished one.

    On a v2 connection the task sends it, page by page; on v1 it queues it for the workers. Progress
    is saved in the `ResyncRun` page by page (or chunk by chunk), so a redelivered task continues
    from the checkpoint. After `time_budget` seconds the task hands the rest to a fresh one, so a
    resync of millions of profiles never runs into the task time limit; a page Customer.io must be
    asked again comes back after its backoff. A large run is split into lanes at its first turn
    (`lane`: a task each, sent at once by as many workers). Returns the profiles done by the run so far.
    """
    connection = Connection.objects.filter(pk=connection_id).first()
    audience = Audience.objects.filter(pk=audience_pk).first() if audience_pk is not None else None
    if connection is None or (audience_pk is not None and audience is None):
        log.info("resync_connection skipped connection=%s audience=%s: deleted since", connection_id, audience_pk)
        return 0
    try:
        turn = background_resync.continue_resync(connection, audience, time_budget, attempt, lane)
    except resync.ResyncError as error:
        log.warning("resync_connection refused connection=%s audience=%s: %s", connection_id, audience_pk, error)
        return 0
    if turn.run is None:
        return 0
    if not turn.finished:
        run = turn.run
        log.info("resync_connection continues run=%s connection=%s done=%s", run.pk, connection_id, run.queued)
        resync_connection.apply_async(
            (connection_id, audience_pk, time_budget, turn.attempt, lane), countdown=turn.come_back_in or None
        )
        return turn.run.queued
    log.info("resync_connection run=%s connection=%s done=%s", turn.run.pk, connection_id, turn.run.queued)
    return turn.run.queued


@shared_task(ignore_result=True, acks_late=True)
def backfill_audience(
    connection_id: int,
    audience_pk: int,
    reason: str,
    time_budget: float = TIME_BUDGET_SECONDS,
    attempt: int = 1,
    lane: int | None = None,
) -> int:
    """Carry a large audience's backfill on for a connection (activation or rename), page by page.

    Resumable: each page (or, on v1, each chunk queued) commits with its checkpoint, and after
    `time_budget` seconds the rest goes to a fresh task; a page Customer.io must be asked again
    comes back after its backoff, and a pause or an open breaker is waited out the same way.
    A large run is split into lanes at its first turn (`lane`: a task each, sent at once by as
    many workers). Returns the profiles done by the run so far.
    """
    turn = backfill.queue_for(connection_id, audience_pk, reason, time_budget, attempt, lane)
    if turn.run is None:
        return 0
    if not turn.finished:
        countdown = turn.come_back_in or None
        backfill_audience.apply_async(
            (connection_id, audience_pk, reason, time_budget, turn.attempt, lane), countdown=countdown
        )
    run = turn.run
    log.info(
        "backfill_audience run=%s connection=%s done=%s finished=%s", run.pk, connection_id, run.queued, turn.finished
    )
    return run.queued


@shared_task(ignore_result=True)
def prune_deliveries_task() -> int:
    """Delete forwarding-log rows older than DELIVERY_RETENTION_DAYS (0 keeps them forever)."""
    return _prune_by_setting(retention.DELIVERIES)


@shared_task(ignore_result=True)
def make_batch_log_partitions() -> list[str]:
    """Make the batch log's monthly partitions ahead of time (PostgreSQL; beat, daily)."""
    made = partitions.ensure_month_partitions()
    if made:
        log.info("make_batch_log_partitions made=%s", ",".join(made))
    return made


@shared_task(ignore_result=True)
def advance_delivery_tallies() -> None:
    """Count settled forwarding-log rows into the totals /metrics reports (beat, every minute)."""
    tallies.advance()


@shared_task(ignore_result=True)
def check_alerts() -> None:
    """Open and close alert episodes, and send the emails they owe (beat, every ALERT_CHECK_INTERVAL_SECONDS)."""
    report = alerts.check()
    if report.opened or report.closed or report.emails_failed:
        log.info(
            "check_alerts opened=%s closed=%s emails_sent=%s emails_failed=%s",
            report.opened,
            report.closed,
            report.emails_sent,
            report.emails_failed,
        )


@shared_task(ignore_result=True)
def prune_firehose_messages_task() -> int:
    """Delete stored Firehose messages older than FIREHOSE_RETENTION_DAYS (0 keeps them forever)."""
    return _prune_by_setting(retention.FIREHOSE_MESSAGES)


def _prune_by_setting(kind: retention.KeptRows) -> int:
    """Prune the kind and its companion (the batch log goes with the forwarding log); rows deleted."""
    days = getattr(settings, kind.retention_setting)
    if days <= 0:
        return 0
    deleted = 0
    pruned: retention.KeptRows | None = kind
    while pruned is not None:
        result = pruned.prune(timedelta(days=days))
        log.info(
            "%s kind=%r deleted=%s batches=%s cutoff=%s partitions_dropped=%s",
            pruned.name, pruned.noun, result.deleted, result.batches, result.cutoff, len(result.partitions_dropped),
        )
        deleted += result.deleted
        pruned = pruned.companion
    return deleted
