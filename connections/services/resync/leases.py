"""Which worker carries a run on, and for how long: the run's lease (`ResyncRun.claimed_until`).

    claim (a conditional UPDATE: only an unfinished run nobody holds) -> renewed as the run moves
    (a chunk queued, a page marked) -> released at the end of a turn; a dead worker's lease runs
    out after FORWARD_CLAIM_SECONDS, and the sweep (backfill.resume_stalled) or the next start of
    the run's scope takes it over from its checkpoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connections.models import ResyncRun

UNFINISHED = (ResyncRun.Status.RUNNING, ResyncRun.Status.INTERRUPTED)


def lease() -> timedelta:
    """How long a worker holds a run without progress, and how long a run nobody holds waits for its task."""
    return timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)


def unclaimed(now: datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def claim(run: ResyncRun) -> datetime | None:
    """Take the run for this worker, running again if it was interrupted (a mark counts only on a
    running run: outbox/inflight.py); the lease's end, or None when another worker holds it."""
    now = timezone.now()
    until = now + lease()
    unfinished = ResyncRun.objects.filter(pk=run.pk, status__in=UNFINISHED).filter(unclaimed(now))
    if not unfinished.update(claimed_until=until, status=ResyncRun.Status.RUNNING):
        return None
    run.status = ResyncRun.Status.RUNNING
    return until


def renew(run: ResyncRun, held: datetime, **fields: object) -> datetime | None:
    """Extend our lease (and set `fields` with it); None when it was lost: it ran out and another
    worker took the run."""
    now = timezone.now()
    until = now + lease()
    ours = ResyncRun.objects.filter(pk=run.pk, claimed_until=held)
    return until if ours.update(claimed_until=until, updated_at=now, **fields) else None


def release(run: ResyncRun, held: datetime) -> None:
    ResyncRun.objects.filter(pk=run.pk, claimed_until=held).update(claimed_until=None)
