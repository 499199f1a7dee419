"""Waking workers: Celery tasks sent by name, so services never import `connections.tasks`.

The tasks module imports the services; the services only know task names. That keeps the
import graph one-way (tasks -> services) and lets services run where no worker is loaded.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError

from connections.services.outbox.wake_throttle import WakeThrottle

log = logging.getLogger("cioaudience.outbox")

FORWARD_TASK = "connections.tasks.forward_connection"
RESYNC_TASK = "connections.tasks.resync_connection"
APPLY_TASK = "connections.tasks.apply_firehose_messages"
# The message applier's key in the wake-up throttle, beside the connections' ids (which are > 0).
APPLIER = 0


def send_task(name: str, args: list, countdown: float | None = None, kwargs: dict | None = None) -> bool:
    """Publish a task by name; False when the broker is unavailable (the sweep covers it)."""
    from cioaudience.celery import app

    try:
        # Explicit None: the worker's own time limits apply. Celery otherwise copies the limits
        # of a task registered in the *sending* process into the message, where they override
        # the worker's settings (a web process with other settings would decide for the workers).
        app.send_task(name, args=args, kwargs=kwargs, countdown=countdown, time_limit=None, soft_time_limit=None)
    except OperationalError as exc:
        log.warning("broker unavailable, leaving it to the sweep task=%s args=%s error=%s", name, args, exc)
        return False
    return True


def forward_now(connection_id: int, countdown: float | None = None) -> bool:
    return send_task(FORWARD_TASK, [connection_id], countdown=countdown)


_throttle = WakeThrottle()


def forget_scheduled() -> None:
    """Forget the wake-ups this process scheduled (their broker and workers are gone: a test's)."""
    _throttle.forget()


def wake_workers(connection_ids: Iterable[int]) -> None:
    """Ask a worker to send what is pending for these connections, once the transaction commits.

    At most one wake-up per connection per FORWARD_WAKE_WINDOW_SECONDS from this process
    (`wake_throttle`). If the broker is down the change and its outbox rows are still
    committed; the periodic sweep enqueues them once it is back, and the request that made
    the change succeeds.
    """
    ids = sorted(set(connection_ids))
    if ids:
        transaction.on_commit(lambda: _publish([(i, functools.partial(forward_now, i)) for i in ids]))


def wake_message_applier() -> None:
    """Ask a worker to apply the stored Firehose messages (FIREHOSE_APPLY=worker), once the transaction commits.

    Throttled like the connections' wake-ups; a task applies every message pending when it runs.
    """
    transaction.on_commit(lambda: _publish([(APPLIER, functools.partial(send_task, APPLY_TASK, []))]))


def _publish(wakeups: list[tuple[int, Callable[..., bool]]]) -> None:
    """Publish each (throttle key, publish(countdown=...)) unless a wake-up already ahead covers it."""
    # Eager tasks ignore a countdown: there every change wakes at once.
    window = 0.0 if settings.CELERY_TASK_ALWAYS_EAGER else settings.FORWARD_WAKE_WINDOW_SECONDS
    now = time.monotonic()
    for key, publish in wakeups:
        delay = _throttle.delay(key, now, window)
        if delay is None:
            continue
        if not publish(countdown=delay or None):
            _throttle.forget(key)  # none is coming: the next change tries again
            return
