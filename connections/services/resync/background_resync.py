"""A resync queued by a worker (the admin's "Resync"), as opposed to `manage.py resync`, which queues it itself.

The `ResyncRun` is started here, in the request, so its progress shows at once; the
`resync_connection` task then resumes that very run (`resync.start` returns the unfinished
run of a scope) and queues its profiles chunk by chunk.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from connections.models import Audience, Connection, ResyncRun
from connections.services.outbox import wakeup
from connections.services.resync import lanes, streaming
from connections.services.resync import runs as resync
from connections.services.resync.streaming import Turn

log = logging.getLogger("cioaudience.resync")


def request_resync(connection: Connection) -> tuple[ResyncRun, bool]:
    """Start (or resume) a resync of every active subscription of `connection` and hand it to a worker.

    Returns the run and whether an unfinished run was resumed. Raises `resync.ResyncError`
    when the connection has no active subscription. If the task cannot be published, the run
    is marked interrupted (the next request resumes it).
    """
    scope = resync.scope_for(connection)
    if not scope.audience_pks:
        raise resync.ResyncError(f"Connection {connection.name!r} has no active subscription: nothing to resync.")
    run, resumed = resync.start(scope)
    transaction.on_commit(partial(publish, run))
    return run, resumed


def publish(run: ResyncRun) -> bool:
    """Hand the run to a worker; False (the run interrupted, to be resumed) when the broker is unavailable."""
    if not wakeup.send_task(wakeup.RESYNC_TASK, [run.connection_id, run.audience_id]):
        log.warning("resync not started run=%s: the broker is unavailable", run.pk)
        resync.interrupt(run)
        return False
    for lane in lanes.unfinished(run):  # a resumed run split into lanes: a task each, as at its split
        publish_lane(lane)
    return True


def publish_lane(lane: ResyncRun) -> None:
    if not wakeup.send_task(wakeup.RESYNC_TASK, [lane.connection_id, lane.audience_id], kwargs={"lane": lane.pk}):
        # It stays unfinished: pressing Resync again resumes the run and publishes its lanes again.
        log.warning("resync lane not started run=%s lane=%s: the broker is unavailable", lane.lane_of_id, lane.pk)


def continue_resync(
    connection: Connection, audience: Audience | None, seconds: float, attempt: int = 1, lane: int | None = None
) -> Turn:
    """A worker's turn on the scope's resync (or one `lane` of it): streamed (v2), or queued for the
    change path's workers (v1).

    A streamed turn only carries on a run that is not finished (the request started it), so a task
    delivered twice never starts a second resync. Raises `resync.ResyncError` for a scope that
    cannot be resynced (no longer subscribed).
    """
    scope = resync.scope_for(connection, audience)
    if not streaming.streams(connection):
        run, finished = resync.queue_for(scope, seconds)
        return Turn(finished=finished, come_back_in=None if finished else 0.0, run=run)
    if lane is not None:
        run = ResyncRun.objects.filter(pk=lane, status__in=resync.UNFINISHED).first()
        return Turn(finished=True) if run is None else streaming.carry_on(connection, run, scope, seconds, attempt)
    run = resync.unfinished_run(scope)
    if run is None:
        return Turn(finished=True)
    run, _ = resync.start(scope)  # running again (an interrupted run), its total counted
    return streaming.carry_on(connection, run, scope, seconds, attempt, hand_out=publish_lane)
