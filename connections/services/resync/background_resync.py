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
from connections.services.resync import runs as resync
from connections.services.resync import streaming
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
    transaction.on_commit(partial(_publish, run))
    return run, resumed


def _publish(run: ResyncRun) -> None:
    if not wakeup.send_task(wakeup.RESYNC_TASK, [run.connection_id, run.audience_id]):
        log.warning("resync not started run=%s: the broker is unavailable", run.pk)
        resync.interrupt(run)


def continue_resync(connection: Connection, audience: Audience | None, seconds: float, attempt: int = 1) -> Turn:
    """A worker's turn on the scope's resync: streamed (v2), or queued for the change path's workers (v1).

    A streamed turn only carries on a run that is not finished (the request started it), so a task
    delivered twice never starts a second resync. Raises `resync.ResyncError` for a scope that
    cannot be resynced (no longer subscribed).
    """
    scope = resync.scope_for(connection, audience)
    if not streaming.streams(connection):
        run, finished = resync.queue_for(scope, seconds)
        return Turn(finished=finished, come_back_in=None if finished else 0.0, run=run)
    run = resync.unfinished_run(scope)
    if run is None:
        return Turn(finished=True)
    run, _ = resync.start(scope)  # running again (an interrupted run), its total counted
    return streaming.carry_on(connection, run, scope, seconds, attempt)
