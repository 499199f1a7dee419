"""Backfills: an audience's current members queued for one connection (activation, rename).

A small audience is queued at once, in the caller's transaction (one INSERT ... SELECT of at
most BACKFILL_INLINE_MAX rows, a few milliseconds). A large one would hold a Firehose request
for seconds (mParticle allows 100 ms, and a rolled-back request is retried for ever), so only
the intent is recorded, as an unfinished run of the resync machinery (members only), and a
worker queues it chunk by chunk, resumably, each chunk committed with its checkpoint.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from connections.models import Audience, Connection, Membership, ResyncRun, Subscription
from connections.services import outbox, resync, wakeup

BACKFILL_TASK = "connections.tasks.backfill_audience"


def backfill(connection_id: int, audience_pk: int, reason: str) -> None:
    """Queue the audience's current members for the connection, now or through a worker."""
    members = Membership.objects.filter(audience_id=audience_pk, is_member=True)
    if members.order_by()[: settings.BACKFILL_INLINE_MAX + 1].count() <= settings.BACKFILL_INLINE_MAX:
        outbox.enqueue_audience_members(connection_id, audience_pk, reason)
        return
    connection = Connection.objects.get(pk=connection_id)
    audience = Audience.objects.get(pk=audience_pk)
    resync.start(resync.Scope(connection, audience, (audience_pk,), reason), count=False)
    transaction.on_commit(lambda: wakeup.send_task(BACKFILL_TASK, [connection_id, audience_pk, reason]))


def queue_for(connection_id: int, audience_pk: int, reason: str, seconds: float) -> tuple[ResyncRun | None, bool]:
    """Queue the recorded backfill for about `seconds` (a worker's turn); True when it is all queued.

    A subscription deactivated (or deleted) meanwhile ends it: nothing more is queued for it.
    """
    connection = Connection.objects.filter(pk=connection_id).first()
    audience = Audience.objects.filter(pk=audience_pk).first()
    if connection is None or audience is None:
        return None, True
    scope = resync.Scope(connection, audience, (audience_pk,), reason)
    active = Subscription.objects.filter(
        connection_id=connection_id, audience_id=audience_pk, status=Subscription.Status.ACTIVE
    ).exists()
    if not active:
        run = ResyncRun.objects.filter(
            connection_id=connection_id, audience_id=audience_pk, reason=reason, status__in=resync.UNFINISHED
        ).first()
        if run is not None:
            resync.finish(run)
        return run, True
    return resync.queue_for(scope, seconds)
