"""A resync queued by a worker (the admin's "Resync"), as opposed to `manage.py resync`, which queues it itself.

The `ResyncRun` is started here, in the request, so its progress shows at once; the
`resync_connection` task then resumes that very run (`resync.start` returns the unfinished
run of a scope) and queues its profiles chunk by chunk.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from connections.models import Connection, ResyncRun
from connections.services.outbox import wakeup
from connections.services.resync import runs as resync

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
