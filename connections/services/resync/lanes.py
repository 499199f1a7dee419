"""A large streamed run split by profile id into lanes, sent by several workers at once (issue 29).

One process carries a run at about 11,000 people/s on this machine: its Python plans a page while
PostgreSQL waits, then PostgreSQL works while Python waits. Two processes on two ranges use both
cores. So a streamed run with at least STREAM_LANE_MIN_PEOPLE per lane is split, once, at its
first turn:

    the scope's profile ids [low, high] -> STREAM_LANES equal id ranges
      -> the run keeps the first (`lane_end`); a lane row (`lane_of` = the run) per other range,
         its checkpoint at the range's start
      -> each row is carried by its own task (or, for `manage.py resync`, its own process), with
         its own checkpoint, mark and lease: the mark rules (outbox/inflight.py) hold per row, so
         a change or an erasure waits for whichever lane's page holds its person
      -> a lane's settled pages count in the run's progress too; the run is finished when every
         range is (`runs.finish`, one at a time under a lock of the run's row)

Ids of a bulk import are dense, so equal id ranges hold about as many members each; an audience
whose members are spread unevenly only makes one lane finish before the other. On SQLite (the
embedded default: one writer at a time) a run is not split.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Max, Min, QuerySet
from django.utils import timezone

from connections.models import Membership, ResyncRun
from connections.services.resync import runs as resync
from connections.services.resync.leases import UNFINISHED


def split(run: ResyncRun, scope: resync.Scope) -> list[ResyncRun]:
    """Split a fresh run into lanes if it is large enough; the new lanes (none: not split, or split
    already), for the caller to hand to workers once committed."""
    count = settings.STREAM_LANES
    if count < 2 or run.lane_of_id is not None or db_connection.vendor != "postgresql":
        return []
    if run.total < count * settings.STREAM_LANE_MIN_PEOPLE:
        return []
    bounds = _id_bounds(scope)
    if bounds is None:
        return []
    low, high = bounds
    edges = [low - 1 + (high - low + 1) * k // count for k in range(1, count)]
    with transaction.atomic():
        # Only a run not yet split and not yet begun; two turns at once split it once.
        fresh = ResyncRun.objects.select_for_update().filter(pk=run.pk, lane_end=None, last_profile_id=0)
        if fresh.first() is None:
            return []
        starts, ends = edges, [*edges[1:], None]
        lanes = ResyncRun.objects.bulk_create(
            ResyncRun(
                connection_id=run.connection_id,
                audience_id=run.audience_id,
                reason=run.reason,
                lane_of=run,
                last_profile_id=start,
                lane_end=end,
            )
            for start, end in zip(starts, ends, strict=True)
        )
        fresh.update(lane_end=edges[0], updated_at=timezone.now())
    run.lane_end = edges[0]
    return lanes


def _id_bounds(scope: resync.Scope) -> tuple[int, int] | None:
    """The scope's lowest and highest profile id: two index lookups per audience
    (membership_audience_profile), where one query over several audiences would read them all."""
    lows, highs = [], []
    for audience_pk in scope.audience_pks:
        rows = Membership.objects.filter(audience_id=audience_pk)
        if scope.members_only:
            rows = rows.filter(is_member=True)
        found = rows.aggregate(low=Min("profile_id"), high=Max("profile_id"))
        if found["low"] is not None:
            lows.append(found["low"])
            highs.append(found["high"])
    return (min(lows), max(highs)) if lows else None


def unfinished(run: ResyncRun) -> QuerySet[ResyncRun]:
    """The run's lanes still to be carried on (none for a run not split, or for a lane)."""
    return ResyncRun.objects.filter(lane_of_id=run.pk, status__in=UNFINISHED).order_by("pk")


def restart(run: ResyncRun) -> list[ResyncRun]:
    """Every lane of a run from its start again (a new backfill of its scope restarts the run);
    returns the lanes whose task had ended (finished or interrupted), to be handed to workers again."""
    now = timezone.now()
    idle = []
    start = run.lane_end
    for lane in ResyncRun.objects.filter(lane_of_id=run.pk).order_by("last_profile_id"):
        if lane.status != ResyncRun.Status.RUNNING:
            idle.append(lane)
        ResyncRun.objects.filter(pk=lane.pk).update(
            last_profile_id=start, queued=0, status=ResyncRun.Status.RUNNING, finished_at=None, updated_at=now
        )
        start = lane.lane_end
    return idle
