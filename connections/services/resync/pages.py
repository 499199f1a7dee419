"""A streamed run's next page: marked in flight, read, and planned as the change path plans.

    next ids above the checkpoint (keyset, one index range) -> the page's last id
      -> mark (run.inflight_to, the lease renewed): from here changes to these people wait
      -> the page's people, planned after the mark (a member who joined the range meanwhile was
         queued in the outbox by their change, and waits for the mark there)
      -> people a change's claim already holds: queued in the outbox (the change path sends them
         after their change, with this run's audience), left out of the page
      -> payloads.plan: exactly what the change path would send each person (identifier,
         attributes, segments, suppression, Customer.io's limits)

No outbox row, log row or ORM object per person: ids come as integers, profiles as one query's
values, and the plan is the change path's own (forwarding/payloads.py), so the two can never differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from connections.models import Connection, Forward, ResyncRun
from connections.services.forwarding.payloads import ClaimedRow, Planned, plan
from connections.services.outbox import queue as outbox
from connections.services.outbox import wakeup
from connections.services.resync import leases
from connections.services.resync import runs as resync


@dataclass
class Page:
    high: int  # the page's last profile id: the checkpoint once it is answered
    held: datetime  # the run's lease, renewed by the mark
    planned: list[Planned] = field(default_factory=list)
    deferred: int = 0  # people left to the outbox: a change's claim held them


def next_page(
    connection: Connection,
    run: ResyncRun,
    scope: resync.Scope,
    held: datetime,
    *,
    size: int,
    attempt: int,
    after: int | None = None,
) -> Page | None:
    """Mark and read the page after `after` (the run's checkpoint, or the last page still in
    flight); None when the run has nothing left. The mark then covers every page from the
    checkpoint to this one.

    Raises `LeaseLost` when another worker took the run meanwhile (its lease had run out).
    """
    after = run.last_profile_id if after is None else after
    ids = resync.next_profile_ids(scope, after, size, up_to=run.lane_end)
    if not ids:
        return None
    high = ids[-1]
    held = mark(run, high, held)
    now = timezone.now()
    # A member who joined inside the range after `ids` was read is not in this page: their change
    # queued them in the outbox, and the mark holds them there until the page is answered.
    claimed = set(
        Forward.objects.filter(connection_id=connection.pk, profile_id__any=ids, claimed_until__gt=now)
        .exclude(claim_token="")
        .values_list("profile_id", flat=True)
    )
    audience_pk = scope.audience.pk if scope.audience is not None else None
    if claimed:
        outbox.enqueue({(connection.pk, profile_id, audience_pk) for profile_id in claimed}, scope.reason)
    rows = [
        ClaimedRow(0, profile_id, audience_pk, scope.reason, attempt - 1)
        for profile_id in ids
        if profile_id not in claimed
    ]
    return Page(high=high, held=held, planned=plan(connection, rows), deferred=len(claimed))


class LeaseLost(Exception):
    """Another worker holds the run now: this one stops without touching it."""


def mark(run: ResyncRun, high: int, held: datetime) -> datetime:
    """Put the page in flight and renew the lease (one conditional UPDATE, committed before the page is read)."""
    until = leases.renew(run, held, inflight_to=high)
    if until is None:
        raise LeaseLost(run.pk)
    run.inflight_to = high
    return until


def settle(run: ResyncRun, page: Page, done: int, held: datetime, still_in_flight: int | None = None) -> None:
    """The page is answered: the checkpoint moves past it, and the mark shrinks to the pages still
    in flight after it (`still_in_flight`: the last one's last id), or comes off.

    Changes to its people that waited for it (a claim skipped them, or gave them back) are due
    now: the connection's workers are woken for them rather than left to the next sweep.
    """
    low, now = run.last_profile_id, timezone.now()
    if not ResyncRun.objects.filter(pk=run.pk, claimed_until=held).update(
        last_profile_id=page.high, queued=F("queued") + done, inflight_to=still_in_flight, updated_at=now
    ):
        raise LeaseLost(run.pk)
    if run.lane_of_id is not None:  # a lane's people count in its run's progress (lanes.py)
        ResyncRun.objects.filter(pk=run.lane_of_id).update(queued=F("queued") + done, updated_at=now)
    run.last_profile_id, run.queued, run.inflight_to = page.high, run.queued + done, still_in_flight
    wake_the_waiting(run.connection_id, low, page.high)


def wake_the_waiting(connection_id: int, low: int, high: int) -> None:
    """Wake the connection's workers if changes of people in (low, high] wait in the outbox."""
    waiting = Forward.objects.filter(connection_id=connection_id, profile_id__gt=low, profile_id__lte=high)
    if waiting.exists():
        wakeup.forward_now(connection_id)


def unmark(run: ResyncRun, held: datetime) -> None:
    """The page must be sent again later: the mark comes off (its people's changes may go), the checkpoint stays."""
    high = run.inflight_to
    ResyncRun.objects.filter(pk=run.pk, claimed_until=held).update(inflight_to=None, updated_at=timezone.now())
    run.inflight_to = None
    if high is not None:
        wake_the_waiting(run.connection_id, run.last_profile_id, high)
