"""A streamed run's turn: pages sent a few at once, each committed with its checkpoint in order (issue 29).

    backfill.queue_for (a worker's task, the run's lease held)
      -> at a large run's first turn: split into lanes by profile id (lanes.py), each carried like
         this by its own task, with its own checkpoint, mark and lease
      -> before each page: the connection re-read (faulted, paused by a 429, backing off: no new
         page; the turn ends and says when to come back); the subscription still active (else the
         run ends once what is under way is answered)
      -> pages.next_page (the mark now reaches its last id; read, planned)
      -> page_sending.page_program, STREAM_PAGES_IN_FLIGHT pages at once (pipeline.py)
      -> in page order, answered for good: pages.settle (the checkpoint moves past the page, the
         mark shrinks to the pages still under way); a transient answer: no page after it is
         settled, what is under way is answered, pages.unmark, and the turn ends with a backoff
         (Retry-After wins)

A crash loses at most the pages under way: the checkpoint is before them, and their requests are
sent again by whichever worker resumes the run (identify and segment calls are idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection as db
from django.db.models import Exists

from connections.models import Connection, ResyncRun, Subscription
from connections.services.connection import breaker, clients
from connections.services.forwarding.delivery_log import ForwardReport, backoff_seconds
from connections.services.resync import lanes, leases, pages
from connections.services.resync import runs as resync
from connections.services.resync.page_sending import PageResult, page_program
from connections.services.resync.pipeline import Pipeline


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


def carry_on(
    connection: Connection,
    run: ResyncRun,
    scope: resync.Scope,
    seconds: float,
    attempt: int = 1,
    hand_out: Callable[[ResyncRun], object] | None = None,
) -> Turn:
    """Take the run's lease and stream it for about `seconds`; finished, with nothing sent, when
    another worker holds it. A large run is split into lanes at its first turn, each lane given at
    once to `hand_out` (a task, or a process, to carry it); without one, the run is not split."""
    held = leases.claim(run)
    if held is None:
        return Turn(finished=True, run=run, held_elsewhere=True)
    if not run.last_profile_id and run.lane_of_id is None:  # the run's first turn
        resync.refresh_membership_statistics()  # the audience may have been imported a moment ago
        for lane in lanes.split(run, scope) if hand_out is not None else ():
            hand_out(lane)
    turn = stream_turn(connection, run, scope, held, seconds, attempt)
    turn.run = run
    return turn


def stream_turn(
    connection: Connection, run: ResyncRun, scope: resync.Scope, held: datetime, seconds: float, attempt: int
) -> Turn:
    """Send pages for about `seconds` from the run's checkpoint, STREAM_PAGES_IN_FLIGHT at once.
    The caller holds the lease `held`."""
    deadline = time.monotonic() + seconds
    report = ForwardReport()
    depth = settings.STREAM_PAGES_IN_FLIGHT
    stop: Turn | None = None  # why no more page is started
    failed: PageResult | None = None  # a page to send again: nothing after it is settled
    ended = False  # the subscription went inactive: the run ends once what is under way is answered
    exhausted = False  # every page is under way or answered
    started = False
    try:
        with ThreadPoolExecutor(max_workers=max(1, depth), thread_name_prefix="cio-page") as pool:
            under_way = Pipeline(pool, depth)
            while True:
                while stop is None and failed is None and not (ended or exhausted) and under_way.has_room():
                    if started and time.monotonic() >= deadline:  # a turn sends one page at least
                        stop = Turn(finished=False, come_back_in=0.0, attempt=attempt, report=report)
                        break
                    wait, subscribed = _must_wait(connection, scope)
                    if wait is not None:
                        stop = Turn(finished=wait < 0, come_back_in=max(wait, 0.0), attempt=attempt, report=report)
                        break
                    if not subscribed:  # deactivated or deleted since: nothing more is sent (SPEC)
                        ended = True
                        break
                    size, after = settings.FORWARD_BATCH_SIZE, under_way.last_high()
                    page = pages.next_page(connection, run, scope, held, size=size, attempt=attempt, after=after)
                    if page is None:
                        exhausted = True
                        break
                    held, started = page.held, True
                    client = clients.track_client(connection)  # one per page: its calls run in a thread
                    under_way.start(page, page_program(connection, run, page, client, report, attempt))
                if not under_way.under_way:
                    break
                under_way.wait()
                for page, result in under_way.finished():
                    if failed is None and result.again:
                        failed = result
                    if failed is None:
                        pages.settle(run, page, result.done + page.deferred, held, under_way.last_high())
                        attempt = 1
    except pages.LeaseLost:
        return Turn(finished=True, report=report, held_elsewhere=True)  # another worker took the run over
    if failed is not None and not ended:
        pages.unmark(run, held)
        leases.release(run, held)
        delay = backoff_seconds(attempt, failed.retry_after)
        return Turn(finished=False, come_back_in=delay, attempt=attempt + 1, report=report)
    if ended or exhausted:
        resync.finish(run)
        leases.release(run, held)
        return Turn(finished=True, report=report)
    leases.release(run, held)
    assert stop is not None  # a turn only ends early for a reason
    return stop


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
    """A run (or a lane of it) stopped from outside a turn (Ctrl-C): interrupted, its mark and lease
    given up at once, so the changes of the people in its page need not wait for the lease to run out.

    Ctrl-C can land while a query is under way, leaving this process's database connection in the
    middle of a command ("another command is already in progress"): outside a transaction, the
    statements here go over a fresh one."""
    if not db.in_atomic_block:
        db.close()
    high = ResyncRun.objects.filter(pk=run.pk).values_list("inflight_to", flat=True).first()
    ResyncRun.objects.filter(pk=run.pk).update(inflight_to=None, claimed_until=None)
    resync.interrupt(run)
    if high is not None:
        pages.wake_the_waiting(run.connection_id, run.last_profile_id, high)
