"""Celery tasks: thin, IDs in, services called."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connections.models import Connection, Delivery, Forward
from connections.services import forwarding

log = logging.getLogger("cioaudience.tasks")

# A task sends for at most this long, then hands the rest to a fresh task so that one
# busy connection cannot hold a worker forever.
TIME_BUDGET_SECONDS = 60.0


@shared_task(ignore_result=True, acks_late=True)
def forward_connection(connection_id: int) -> None:
    report = forwarding.forward_pending(connection_id, time_budget=TIME_BUDGET_SECONDS)
    if report.faulted or report.next_due_in is None:
        return
    # More is due (the budget ran out) or rows wait in backoff: come back when they are due.
    forward_connection.apply_async((connection_id,), countdown=report.next_due_in)


@shared_task(ignore_result=True)
def sweep() -> int:
    """Re-enqueue connections that have due forwards no worker holds: a lost broker message loses nothing."""
    now = timezone.now()
    stale = now - timezone.timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)
    Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=stale).update(
        status=Delivery.Status.FAILED,
        error="The worker stopped before Customer.io answered; the update was queued again.",
        finished_at=now,
    )
    due = (
        Forward.objects.filter(due_at__lte=now, connection__state=Connection.State.ACTIVE)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .values_list("connection_id", flat=True)
        .distinct()
    )
    connection_ids = list(due)
    for connection_id in connection_ids:
        forward_connection.delay(connection_id)
    if connection_ids:
        log.info("sweep re-enqueued connections=%s", connection_ids)
    return len(connection_ids)
