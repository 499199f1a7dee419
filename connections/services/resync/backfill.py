"""Backfills: an audience's current members queued for one connection (activation, rename, segment id).

A small audience is queued at once, in the caller's transaction (one INSERT ... SELECT of at
most BACKFILL_INLINE_MAX rows, a few milliseconds). A large one would hold a Firehose request
for seconds (mParticle allows 100 ms, and a rolled-back request is retried for ever), so only
the intent is recorded, as an unfinished run of the resync machinery (members only), and a
worker queues it chunk by chunk, resumably, each chunk committed with its checkpoint.

    backfill (request) -> run recorded, task published on commit
      -> queue_for (worker): claims the run (a lease, `claimed_until`, renewed chunk by chunk),
         queues chunks from the checkpoint, hands the rest to a fresh task after its turn; a large
         streamed run is split into lanes at its first turn, a task each (`lane`)
      -> resume_stalled (the sweep): a run no worker holds and nobody touched for a lease's
         length (its task's broker message was lost, or its worker died) is published again
         and continues from its checkpoint
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Audience, Connection, Forward, Membership, ResyncRun, Subscription
from connections.services.outbox import queue as outbox
from connections.services.outbox import wakeup
from connections.services.resync import lanes, leases, streaming
from connections.services.resync import runs as resync
from connections.services.resync.streaming import Turn

log = logging.getLogger("cioaudience.resync")

BACKFILL_TASK = "connections.tasks.backfill_audience"
REASONS = (Forward.Reason.ACTIVATION, Forward.Reason.RENAME)


def backfill(connection_id: int, audience_pk: int, reason: str) -> None:
    """Queue the audience's current members for the connection, now or through a worker."""
    members = Membership.objects.filter(audience_id=audience_pk, is_member=True)
    if members.order_by()[: settings.BACKFILL_INLINE_MAX + 1].count() <= settings.BACKFILL_INLINE_MAX:
        outbox.enqueue_audience_members(connection_id, audience_pk, reason)
        return
    connection = Connection.objects.get(pk=connection_id)
    audience = Audience.objects.get(pk=audience_pk)
    run, resumed = resync.start(resync.Scope(connection, audience, (audience_pk,), reason), count=False)
    idle_lanes: list[ResyncRun] = []
    if resumed and (run.last_profile_id or run.lane_end is not None):
        # A new backfill of a scope whose run is under way starts again from the first member: those
        # already queued may have been sent (or cancelled) before what calls for this one changed.
        # Rows still waiting are not queued twice (ON CONFLICT DO NOTHING). A split run: every lane too.
        ResyncRun.objects.filter(pk=run.pk).update(last_profile_id=0, queued=0, total=0, updated_at=timezone.now())
        idle_lanes = lanes.restart(run)
    transaction.on_commit(lambda: wakeup.send_task(BACKFILL_TASK, [connection_id, audience_pk, reason]))
    for lane in idle_lanes:
        transaction.on_commit(partial(publish_lane, lane))


def publish_lane(lane: ResyncRun) -> bool:
    """A task for the lane (if the broker is unavailable, the sweep publishes it once it stalls)."""
    args = [lane.connection_id, lane.audience_id, lane.reason]
    return wakeup.send_task(BACKFILL_TASK, args, kwargs={"lane": lane.pk})


def queue_for(
    connection_id: int, audience_pk: int, reason: str, seconds: float, attempt: int = 1, lane: int | None = None
) -> Turn:
    """Carry the recorded backfill (or one `lane` of it) on for about `seconds` (a worker's turn);
    says when a task must come back. Lanes split off at its first turn get a task each at once.

    Only an unfinished run is resumed, from its checkpoint; none (finished, run None): it is done,
    or a worker holds it (the same run is never carried on by two workers at once). A subscription
    deactivated (or deleted) meanwhile ends it: nothing more is sent for it. On a v2 connection the
    run streams its pages to Customer.io itself (streaming.py); on v1 it queues its members in the
    outbox chunk by chunk, for the change path's workers to send one by one.
    """
    connection = Connection.objects.filter(pk=connection_id).first()
    audience = Audience.objects.filter(pk=audience_pk).first()
    if connection is None or audience is None:
        return Turn(finished=True)
    unfinished = ResyncRun.objects.filter(
        connection_id=connection_id, audience_id=audience_pk, reason=reason, status__in=resync.UNFINISHED
    )
    run = unfinished.filter(pk=lane) if lane is not None else unfinished.filter(lane_of=None).order_by("-pk")
    run = run.first()
    if run is None:
        return Turn(finished=True)
    active = Subscription.objects.filter(
        connection_id=connection_id, audience_id=audience_pk, status=Subscription.Status.ACTIVE
    ).exists()
    if not active:
        resync.finish(run)
        return Turn(finished=True, run=run)
    scope = resync.Scope(connection, audience, (audience_pk,), reason)
    if streaming.streams(connection):
        if not run.total and run.lane_of_id is None:
            run, _ = resync.start(scope)  # the same run, running, with its total counted
        return streaming.carry_on(connection, run, scope, seconds, attempt, hand_out=publish_lane)
    held = leases.claim(run)
    if held is None:
        log.info("backfill run=%s is being queued by another worker", run.pk)
        return Turn(finished=True)
    run, _ = resync.start(scope)  # the same run, running, with its total counted
    deadline = time.monotonic() + seconds
    chunks = resync.queue(run, scope)
    for _ in chunks:
        held = leases.renew(run, held)
        if held is None:
            chunks.close()
            log.warning("backfill run=%s: the lease ran out and another worker took it", run.pk)
            return Turn(finished=True, run=run)
        if time.monotonic() >= deadline:
            chunks.close()  # the run stays unfinished: the next task resumes it from the checkpoint
            leases.release(run, held)
            return Turn(finished=False, come_back_in=0.0, run=run)
    leases.release(run, held)
    return Turn(finished=True, run=run)


def stalled(now: datetime) -> QuerySet[ResyncRun]:
    """Unfinished backfills no worker holds and nobody has touched for a lease's length."""
    return ResyncRun.objects.filter(
        reason__in=REASONS, status__in=resync.UNFINISHED, updated_at__lte=now - leases.lease()
    ).filter(leases.unclaimed(now))


def resume_stalled() -> list[int]:
    """Publish a task for each stalled backfill (the sweep); returns the runs published.

    Each run is taken by a conditional UPDATE of its `updated_at` whose row count is checked,
    so two sweeps at once publish it once, and the next sweep waits another lease for the task.
    """
    now = timezone.now()
    resumed = []
    rows = stalled(now).values_list("pk", "updated_at", "connection_id", "audience_id", "reason", "lane_of_id")
    for pk, updated_at, connection_id, audience_pk, reason, lane_of in rows:
        if not stalled(now).filter(pk=pk, updated_at=updated_at).update(updated_at=now):
            continue
        lane = {"lane": pk} if lane_of is not None else None
        if wakeup.send_task(BACKFILL_TASK, [connection_id, audience_pk, reason], kwargs=lane):
            resumed.append(pk)
    return resumed
