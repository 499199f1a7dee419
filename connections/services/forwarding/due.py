"""What the periodic sweep (beat, every SWEEP_INTERVAL_SECONDS) finds: work that no worker holds.

A lost broker message, a killed worker or a broker outage leaves work behind; the sweep
(`tasks.sweep`) hands it to a worker again, so nothing is lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from connections.models import Connection, Delivery, ErasureCall, Forward
from connections.services.erasure import calls as erasure_calls

ABANDONED = "The worker stopped before Customer.io answered; the update was queued again."


def close_abandoned_log_rows(now: datetime) -> int:
    """Log rows left `pending` by a worker that died become `retrying`: their forwards are still in the outbox."""
    stale = now - timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)
    return Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=stale).update(
        status=Delivery.Status.RETRYING, error=ABANDONED, finished_at=now
    )


def connections_with_due_work(now: datetime) -> list[int]:
    """Connections with something due that no worker holds, in id order.

    Due forwards of an active connection that is not paused and that no claim holds, the due
    probe of a connection that is backing off, and due erasure calls of an active, unpaused one.
    """
    not_paused = Q(connection__paused_until__isnull=True) | Q(connection__paused_until__lte=now)
    due = (
        Forward.objects.filter(due_at__lte=now, connection__state=Connection.State.ACTIVE)
        .filter(not_paused)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .values_list("connection_id", flat=True)
        .distinct()
    )
    probes = Connection.objects.filter(state=Connection.State.BACKING_OFF, next_probe_at__lte=now).values_list(
        "pk", flat=True
    )
    erasures = (
        ErasureCall.objects.filter(erasure_calls.due_calls(now), connection__state=Connection.State.ACTIVE)
        .filter(not_paused)
        .values_list("connection_id", flat=True)
        .distinct()
    )
    return sorted({*due, *probes, *erasures})
