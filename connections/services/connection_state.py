"""A connection's state: faulted when Customer.io rejects its credentials, resumed by a person."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.models import Connection
from connections.services import outbox


def note_results(connection: Connection, results: Sequence[SendResult]) -> None:
    """What every request's outcome tells about the connection: last success, last error, a fault.

    Every sender (identify, segment and erasure requests) reports here after each request or group.
    """
    now = timezone.now()
    errors = [r.error for r in results if r.outcome in (Outcome.FAILED, Outcome.RETRY)]
    if any(r.outcome is Outcome.SUCCEEDED for r in results):
        Connection.objects.filter(pk=connection.pk).update(last_success_at=now)
    if errors:
        Connection.objects.filter(pk=connection.pk).update(last_error=errors[-1][:2000], last_error_at=now)
    rejected = [r for r in results if r.outcome is Outcome.CREDENTIALS_REJECTED]
    if rejected:
        fault(connection, rejected[0].error or "Customer.io rejected the credentials.")


def fault(connection: Connection, error: str) -> None:
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.FAULTED, last_error=error[:2000], last_error_at=timezone.now()
    )
    connection.state = Connection.State.FAULTED


@transaction.atomic
def resume(connection: Connection) -> bool:
    """Back to active; its waiting forwards are sent. Returns False if it was not faulted."""
    changed = Connection.objects.filter(pk=connection.pk, state=Connection.State.FAULTED).update(
        state=Connection.State.ACTIVE
    )
    connection.refresh_from_db(fields=["state"])
    if changed:
        outbox.wake_workers([connection.pk])
    return bool(changed)
