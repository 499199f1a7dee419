"""A streamed run's turn: pages sent one after another, each committed with its checkpoint (issue 29).

    backfill.queue_for (a worker's task, the run's lease held)
      -> per page: the connection re-read (faulted, paused by a 429, backing off: the turn ends
         and says when to come back); the subscription still active (else the run ends)
      -> pages.next_page (marked in flight, read, planned) -> page_sending.send_page
      -> answered for good: pages.settle (the checkpoint moves past the page, the mark comes off)
         a transient answer: pages.unmark, and the turn ends with a backoff (Retry-After wins)

A crash loses at most the page in flight: the checkpoint is before it, and its requests are sent
again by whichever worker resumes the run (identify and segment calls are idempotent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Exists

from connections.models import Connection, ResyncRun, Subscription
from connections.services.connection import breaker, clients
from connections.services.forwarding.delivery_log import ForwardReport, backoff_seconds
from connections.services.resync import leases, pages
from connections.services.resync import runs as resync
from connections.services.resync.page_sending import send_page


@dataclass
class Turn:
    finished: bool  # nothing is left for a task: the run is done, ended, or held by another worker
    come_back_in: float | None = None  # not finished: seconds until the next task may continue it
    attempt: int = 1  # the attempt the next task sends the page at (a backoff grows with it)
    report: ForwardReport | None = None
    run: ResyncRun | None = None
    held_elsewhere: bool = False  # another worker carries the run on


def streams(connection: Connection) -> bool:
    """Whether whole-audience work on this connection is streamed: v2 batches only (v1 sends one person per request)."""
    return connection.transport == Connection.Transport.V2_BATCH


def carry_on(connection: Connection, run: ResyncRun, scope: resync.Scope, seconds: float, attempt: int = 1) -> Turn:
    """Take the run's lease and stream it for about `seconds`; finished, with nothing sent, when
    another worker holds it."""
    held = leases.claim(run)
    if held is None:
        return Turn(finished=True, run=run, held_elsewhere=True)
    if not run.last_profile_id:
        resync.refresh_membership_statistics()  # the audience may have been imported a moment ago
    turn = stream_turn(connection, run, scope, held, seconds, attempt)
    turn.run = run
    return turn


def stream_turn(
    connection: Connection, run: ResyncRun, scope: resync.Scope, held: datetime, seconds: float, attempt: int
) -> Turn:
    """Send pages for about `seconds` from the run's checkpoint. The caller holds the lease `held`."""
    deadline = time.monotonic() + seconds
    client = clients.track_client(connection)
    report = ForwardReport()
    try:
        while True:
            wait, subscribed = _must_wait(connection, scope)
            if wait is not None:
                leases.release(run, held)
                return Turn(finished=wait < 0, come_back_in=max(wait, 0.0), attempt=attempt, report=report)
            if not subscribed:
                resync.finish(run)  # deactivated or deleted since: nothing more is sent (SPEC)
                leases.release(run, held)
                return Turn(finished=True, report=report)
            page = pages.next_page(connection, run, scope, held, size=settings.FORWARD_BATCH_SIZE, attempt=attempt)
            if page is None:
                resync.finish(run)
                leases.release(run, held)
                return Turn(finished=True, report=report)
            held = page.held
            result = send_page(connection, run, page, client, report, attempt)
            if result.again:
                pages.unmark(run, held)
                leases.release(run, held)
                delay = backoff_seconds(attempt, result.retry_after)
                return Turn(finished=False, come_back_in=delay, attempt=attempt + 1, report=report)
            pages.settle(run, page, result.done + page.deferred)
            attempt = 1
            if time.monotonic() >= deadline:
                leases.release(run, held)
                return Turn(finished=False, come_back_in=0.0, report=report)
    except pages.LeaseLost:
        return Turn(finished=True, report=report, held_elsewhere=True)  # another worker took the run over


def _must_wait(connection: Connection, scope: resync.Scope) -> tuple[float | None, bool]:
    """Whether to send now (one query, before each page): None, or the seconds to wait (paused,
    backing off), or -1 when faulted (its resume restarts the run); and whether the audience is
    still subscribed (an audience's run)."""
    rows = Connection.objects.filter(pk=connection.pk)
    if scope.audience is not None:
        active = Subscription.objects.filter(
            connection=connection, audience=scope.audience, status=Subscription.Status.ACTIVE
        )
        rows = rows.annotate(subscribed=Exists(active))
    fresh = rows.values("state", "paused_until", "next_probe_at", *(["subscribed"] if scope.audience else [])).first()
    if fresh is None:
        return -1.0, False
    return _wait(connection, fresh), fresh.get("subscribed", True)


def _wait(connection: Connection, fresh: dict) -> float | None:
    connection.state, connection.paused_until = fresh["state"], fresh["paused_until"]
    connection.next_probe_at = fresh["next_probe_at"]
    if connection.state == Connection.State.FAULTED:
        return -1.0
    if paused := breaker.seconds_paused(connection):
        return paused
    if connection.state == Connection.State.BACKING_OFF:
        return breaker.seconds_to_probe(connection) or float(settings.BREAKER_PROBE_BASE)
    return None


def stop(run: ResyncRun) -> None:
    """A run stopped from outside a turn (Ctrl-C): interrupted, its mark and lease given up at once,
    so the changes of the people in its page need not wait for the lease to run out."""
    high = ResyncRun.objects.filter(pk=run.pk).values_list("inflight_to", flat=True).first()
    ResyncRun.objects.filter(pk=run.pk).update(inflight_to=None, claimed_until=None)
    resync.interrupt(run)
    if high is not None:
        pages.wake_the_waiting(run.connection_id, run.last_profile_id, high)
