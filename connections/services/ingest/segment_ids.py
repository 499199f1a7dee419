"""The Customer.io manual segment id of subscriptions: the one place it changes (SPEC section 11).

Both ways of setting it, the admin (`segments.set_segment_id`) and mParticle's audience
subscription setting (`store_segment_ids`, from a Firehose message), come here, so both
backfill the same way: an active subscription that now names a (different) segment has its
audience's current members queued (`backfill.backfill`: in the caller's transaction when the
audience is small, by a worker otherwise), and the worker adds them after identifying them,
as on activation. Clearing the id, or setting the one already stored, queues nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Connection, Forward, Subscription
from connections.services.resync import backfill


def change_segment_id(rows: QuerySet[Subscription], segment_id: int | None) -> int:
    """Set these subscriptions' segment id and backfill the active ones that changed; returns how many changed.

    Each row is changed by a conditional UPDATE whose row count is checked, so two callers
    setting the same id at once backfill it once, and a message repeating the stored id
    (every membership message may carry it) locks and queues nothing.
    """
    changed = 0
    # Django turns exclude(x=5) into NOT (x = 5 AND x IS NOT NULL) and exclude(x=None) into
    # x IS NOT NULL, so rows holding NULL are compared correctly both ways.
    candidates = rows.exclude(customerio_segment_id=segment_id)
    for pk, connection_id, audience_pk in candidates.values_list("pk", "connection_id", "audience_id"):
        with transaction.atomic():
            won = (
                Subscription.objects.filter(pk=pk)
                .exclude(customerio_segment_id=segment_id)
                .update(customerio_segment_id=segment_id, updated_at=timezone.now())
            )
            if not won:
                continue
            changed += 1
            # Read after the UPDATE, which holds the row: a concurrent (de)activation waits for this transaction.
            active = Subscription.objects.filter(pk=pk, status=Subscription.Status.ACTIVE).exists()
            if segment_id is not None and active:
                backfill.backfill(connection_id, audience_pk, Forward.Reason.ACTIVATION)
    return changed


def store_segment_ids(connection: Connection, segment_ids: Mapping[int, int | None]) -> int:
    """Set each audience's subscription on this connection to its segment id (None clears it).

    Keyed by the source's `audience_id`; audiences without a subscription here are left alone
    (mParticle sends the settings of its own audience connection, which may not exist here yet).
    Returns how many subscriptions changed.
    """
    return sum(
        change_segment_id(
            Subscription.objects.filter(connection=connection, audience__audience_id=audience_id), segment_id
        )
        for audience_id, segment_id in segment_ids.items()
    )
