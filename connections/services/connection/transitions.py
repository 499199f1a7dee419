"""A connection's state: faulted when Customer.io rejects its credentials, resumed by a person.

Transient trouble (backing off, paused) is the circuit breaker's, in breaker.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.models import Connection, Forward
from connections.services.connection import breaker
from connections.services.connection import history as state_log
from connections.services.outbox import queue as outbox


def note_results(connection: Connection, results: Sequence[SendResult], *, probe: bool = False) -> None:
    """What every request's outcome tells about the connection: last success and error, the
    circuit breaker and the pause (breaker.py), a fault on rejected credentials.

    Every sender (identify, segment and erasure requests) reports here after each request or group.
    """
    breaker.record(connection, results, probe=probe)
    rejected = [r for r in results if r.outcome is Outcome.CREDENTIALS_REJECTED]
    if rejected:
        fault(connection, rejected[0].error or "Customer.io rejected the credentials.")


def fault(connection: Connection, error: str) -> None:
    now = timezone.now()
    old = Connection.objects.filter(pk=connection.pk).values_list("state", flat=True).first()
    if Connection.objects.filter(pk=connection.pk).exclude(state=Connection.State.FAULTED).update(
        state=Connection.State.FAULTED, state_changed_at=now, next_probe_at=None, last_error=error[:2000],
        last_error_at=now, credentials_verified_at=None,  # rejected now, whatever Customer.io accepted before
    ):
        state_log.note_transition(connection.pk, old, Connection.State.FAULTED, error)
    connection.state = Connection.State.FAULTED


@transaction.atomic
def resume(connection: Connection, reason: str = "resumed from the admin") -> bool:
    """Back to active (from faulted, or backing off: a person says it works again); its waiting
    forwards are sent at once. Returns False if it was active already."""
    now = timezone.now()
    old = Connection.objects.filter(pk=connection.pk).values_list("state", flat=True).first()
    changed = Connection.objects.filter(pk=connection.pk).exclude(state=Connection.State.ACTIVE).update(
        state=Connection.State.ACTIVE,
        state_changed_at=now,
        next_probe_at=None,
        failed_probes=0,
        consecutive_failures=0,
        failing_since=None,
        paused_until=None,
    )
    connection.refresh_from_db(fields=["state", "state_changed_at"])
    if changed:
        Forward.objects.filter(connection_id=connection.pk, claim_token="", due_at__gt=now).update(due_at=now)
        state_log.note_transition(connection.pk, old, Connection.State.ACTIVE, reason)
        outbox.wake_workers([connection.pk])
    return bool(changed)
