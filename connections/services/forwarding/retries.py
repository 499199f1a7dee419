"""Retrying deliveries from the forwarding log (the admin's "Retry selected" action)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from connections.models import Delivery, Forward
from connections.services.outbox import queue as outbox

RETRYABLE = (Delivery.Status.FAILED, Delivery.Status.CANCELLED)


@transaction.atomic
def retry_deliveries(deliveries: QuerySet[Delivery]) -> int:
    """Queue a fresh forward for each (connection, profile) among failed or cancelled deliveries.

    Nothing old is replayed: the payload is computed from the database when sent, so a
    retry carries the profile's current state. Returns how many forwards were queued.
    """
    keys = (
        deliveries.filter(status__in=RETRYABLE, profile__isnull=False)
        .order_by()
        .values_list("connection_id", "profile_id")
        .distinct()
    )
    return outbox.enqueue(
        ((connection_id, profile_id, None) for connection_id, profile_id in keys), Forward.Reason.RETRY
    )
