"""A split run's lanes carried by processes of `manage.py resync` (workers carry them as tasks).

the command's process carries the run's own range -> a forked process per other lane, each
carrying its lane turn after turn (streaming.carry_on), as a worker's task would -> the
command waits for them, and carries itself whatever a process left unfinished
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from multiprocessing.process import BaseProcess

from django.db import connections

from connections.models import Connection, ResyncRun
from connections.services.resync import runs as resync
from connections.services.resync import streaming


def carry_here(connection: Connection, lane: ResyncRun, scope: resync.Scope, seconds: float) -> None:
    """Carry a lane to its end in this process, turn after turn; Ctrl-C gives its mark up at once
    (and goes on to the caller)."""
    attempt = 1
    try:
        while True:
            turn = streaming.carry_on(connection, lane, scope, seconds, attempt)
            if turn.finished:
                return
            attempt = turn.attempt
            time.sleep(turn.come_back_in or 0.0)
    except KeyboardInterrupt:
        # A second one (the command passes Ctrl-C on to its lanes' processes too) must not cut
        # the stop short, leaving the lane's mark to run out with its lease.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        streaming.stop(lane)
        raise


def _carry_in_child(connection: Connection, lane: ResyncRun, scope: resync.Scope, seconds: float) -> None:
    try:
        carry_here(connection, lane, scope, seconds)
    except KeyboardInterrupt:
        return  # stopped (Ctrl-C reaches the command too, which says so)


def start_process(connection: Connection, lane: ResyncRun, scope: resync.Scope, seconds: float) -> BaseProcess:
    """A child process that carries the lane (forked: it shares nothing open with this one)."""
    connections.close_all()  # the child opens its own; this process reopens on its next query
    process = multiprocessing.get_context("fork").Process(
        target=_carry_in_child, args=(connection, lane, scope, seconds), name=f"resync-lane-{lane.pk}", daemon=False
    )
    process.start()
    return process
