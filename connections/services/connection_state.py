"""A connection's state: faulted when Customer.io rejects its credentials, resumed by a person."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from connections.models import Connection
from connections.services import outbox


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
