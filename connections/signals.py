"""Model signals: thin, services called.

A connection is deleted by the admin (one, or "Delete selected", which bypasses Model.delete), by
a queryset or by an instance; Django's collector sends `pre_delete` for each of them, inside the
deleting transaction and before its erasure calls' foreign key is set to NULL.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from connections.models import Connection
from connections.services.erasure import calls as erasure_calls


@receiver(pre_delete, sender=Connection, dispatch_uid="connections.end_erasure_calls_of_deleted_connection")
def end_erasure_calls(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    """Its open erasure calls can never be sent now: they end, identifier blanked."""
    erasure_calls.end_orphaned([instance.pk])
