"""Resync: queue the full current state of a connection's profiles, resumably (SPEC §7).

A resync walks the ids of every profile that has a membership record in the connection's
active subscriptions (or in one audience's) in keyset-paginated chunks, and writes one
RESYNC `Forward` per profile with an INSERT ... SELECT. The checkpoint (`ResyncRun`) is
saved in the same transaction as each chunk, so a crash or Ctrl-C loses at most the chunk
in flight and a restart continues after the last one committed. Memory stays constant
however many profiles there are: one chunk's ids (a few thousand integers) at a time.

The rows are sent by the one forwarding path (`forwarding.forward_pending`, in a worker or
in the caller's process). RESYNC rows without an audience mean "the full state": every
member "true" and every recorded ex-member "false", or SegmentMembership; with an audience,
that audience only (see `payloads.plan`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection as db_connection
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from connections.models import (
    Audience,
    BatchDelivery,
    Connection,
    Delivery,
    Forward,
    Membership,
    ResyncRun,
    Subscription,
)
from connections.services.forwarding.payloads import ClaimedRow, Planned, plan
from connections.services.outbox import queue as outbox
from connections.services.resync import leases

CHUNK_SIZE = 5000  # profiles queued per transaction
PREVIEW_CHUNK_SIZE = 500  # profiles planned at once by a dry run, like a worker's claim

UNFINISHED = leases.UNFINISHED


class ResyncError(Exception):
    """A resync cannot be done as asked (for example, the audience is not subscribed)."""


@dataclass(frozen=True)
class Scope:
    """What a resync covers: a connection, and one audience or (None) every active subscription."""

    connection: Connection
    audience: Audience | None
    audience_pks: tuple[int, ...]
    # RESYNC: every profile with a membership record; ACTIVATION / RENAME (a large audience's
    # backfill, queued by a worker rather than in the request): its current members only.
    reason: str = Forward.Reason.RESYNC

    @property
    def members_only(self) -> bool:
        return self.reason != Forward.Reason.RESYNC

    def describe(self) -> str:
        if self.audience is None:
            return f"connection {self.connection.name!r} (every active subscription)"
        return f"connection {self.connection.name!r}, audience {self.audience.audience_id} ({self.audience.name})"


@dataclass
class RunCounts:
    """Final outcomes of a run's deliveries so far (attempts that will be retried are not final)."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    requests: int = 0


def scope_for(connection: Connection, audience: Audience | None = None) -> Scope:
    active = Subscription.objects.filter(connection=connection, status=Subscription.Status.ACTIVE)
    if audience is None:
        return Scope(connection, None, tuple(sorted(active.values_list("audience_id", flat=True))))
    if not active.filter(audience=audience).exists():
        raise ResyncError(
            f"Audience {audience.audience_id} ({audience.name}) has no active subscription "
            f"on connection {connection.name!r}: nothing of it is forwarded there."
        )
    return Scope(connection, audience, (audience.pk,))


def _memberships(scope: Scope) -> QuerySet[Membership]:
    rows = Membership.objects.filter(audience_id__in=scope.audience_pks)
    return rows.filter(is_member=True) if scope.members_only else rows


def count_profiles(scope: Scope) -> int:
    if not scope.audience_pks:
        return 0
    return _memberships(scope).aggregate(n=Count("profile_id", distinct=True))["n"]


def unfinished_run(scope: Scope) -> ResyncRun | None:
    """The scope's run still to be carried on, if any."""
    return (
        ResyncRun.objects.filter(
            connection=scope.connection,
            audience=scope.audience,
            reason=scope.reason,
            status__in=UNFINISHED,
            lane_of=None,
        )
        .order_by("-pk")
        .first()
    )


def start(scope: Scope, *, count: bool = True) -> tuple[ResyncRun, bool]:
    """The unfinished run of this scope, to be resumed from its checkpoint, or a new run.

    Returns the run and whether it is resumed. `count=False` leaves the total to be counted
    when the run is resumed (a web request must not count a million memberships).
    """
    with transaction.atomic():
        run = (
            ResyncRun.objects.select_for_update()
            .filter(
                connection=scope.connection,
                audience=scope.audience,
                reason=scope.reason,
                status__in=UNFINISHED,
                lane_of=None,
            )
            .order_by("-pk")
            .first()
        )
        if run is not None:
            run.status = ResyncRun.Status.RUNNING
            if not run.total and count:
                run.total = count_profiles(scope)
            run.save(update_fields=["status", "total", "updated_at"])
            # Its lanes, if it was split: an interrupted run is interrupted in every lane.
            ResyncRun.objects.filter(lane_of=run, status=ResyncRun.Status.INTERRUPTED).update(
                status=ResyncRun.Status.RUNNING, updated_at=timezone.now()
            )
            return run, True
        run = ResyncRun.objects.create(
            connection=scope.connection,
            audience=scope.audience,
            reason=scope.reason,
            total=count_profiles(scope) if count else 0,
        )
        return run, False


def next_profile_ids(scope: Scope, after: int, limit: int, up_to: int | None = None) -> list[int]:
    """The next `limit` profile ids in scope above `after` (and at most `up_to`: a lane's end),
    ascending (one keyset page).

    One index range per audience (membership_audience_profile), merged here: a single query over
    several audiences would sort every remaining row of them for each page.
    """
    found: set[int] = set()
    for audience_pk in scope.audience_pks:
        rows = Membership.objects.filter(audience_id=audience_pk, profile_id__gt=after)
        if up_to is not None:
            rows = rows.filter(profile_id__lte=up_to)
        if scope.members_only:
            rows = rows.filter(is_member=True)
        found.update(rows.order_by("profile_id").values_list("profile_id", flat=True)[:limit])
    return sorted(found)[:limit]


def queue_next_chunk(run: ResyncRun, scope: Scope, *, chunk_size: int = CHUNK_SIZE, wake: bool = True) -> int:
    """Queue the next chunk after the run's checkpoint and move the checkpoint, in one transaction.

    Returns how many profiles were queued (0: the run has nothing left). `run` is updated.
    """
    with transaction.atomic():
        # Re-read the checkpoint under a row lock: two processes resuming the same run at
        # once then take turns instead of queuing the same chunk twice.
        locked = ResyncRun.objects.select_for_update().get(pk=run.pk)
        ids = next_profile_ids(scope, locked.last_profile_id, chunk_size)
        if not ids:
            run.last_profile_id, run.queued = locked.last_profile_id, locked.queued
            return 0
        queued = _insert_forwards(scope, after=locked.last_profile_id, up_to=ids[-1])
        locked.last_profile_id = ids[-1]
        locked.queued += queued
        locked.save(update_fields=["last_profile_id", "queued", "updated_at"])
        if wake:
            outbox.wake_workers([scope.connection.pk])
    run.last_profile_id, run.queued, run.updated_at = locked.last_profile_id, locked.queued, locked.updated_at
    return queued


def _insert_forwards(scope: Scope, *, after: int, up_to: int) -> int:
    """One RESYNC row per profile in scope with after < id <= up_to, never brought into Python."""
    now = timezone.now()
    forward = Forward._meta.db_table
    membership = Membership._meta.db_table
    placeholders = ", ".join(["%s"] * len(scope.audience_pks))
    audience_pk = scope.audience.pk if scope.audience is not None else None
    members = " AND m.is_member = %s" if scope.members_only else ""
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {forward} (connection_id, profile_id, audience_id, reason, created_at, due_at,"  # noqa: S608
            f" attempts, claim_token) SELECT %s, m.profile_id, %s, %s, %s, %s, 0, '' FROM {membership} m"
            f" WHERE m.audience_id IN ({placeholders}) AND m.profile_id > %s AND m.profile_id <= %s{members}"
            " GROUP BY m.profile_id ON CONFLICT DO NOTHING",
            [
                scope.connection.pk,
                audience_pk,
                scope.reason,
                now,
                now,
                *scope.audience_pks,
                after,
                up_to,
                *([True] if scope.members_only else []),
            ],
        )
        return cursor.rowcount


def queue(run: ResyncRun, scope: Scope, *, chunk_size: int = CHUNK_SIZE, wake: bool = True) -> Iterator[int]:
    """Queue chunk after chunk from the checkpoint, yielding each chunk's count; then mark the run done."""
    queued_here = analysed_at = 0
    while queued := queue_next_chunk(run, scope, chunk_size=chunk_size, wake=wake):
        queued_here += queued
        if queued_here >= 2 * analysed_at + chunk_size:
            refresh_outbox_statistics()
            analysed_at = queued_here
        yield queued
    if queued_here > analysed_at:
        refresh_outbox_statistics()
    finish(run)


def refresh_outbox_statistics() -> None:
    """Let PostgreSQL's planner see how much the outbox has grown.

    A resync can take the outbox from empty to millions of rows faster than autovacuum
    re-analyses it; with statistics of an empty table the workers' claim query reads the
    whole outbox instead of walking its index (seconds per claim instead of milliseconds,
    measured by bench/resync.py). Called as the run doubles, so about log2(profiles / chunk)
    times; ANALYZE samples a fixed number of rows, so each call is cheap.
    """
    analyze(Forward)


def refresh_membership_statistics() -> None:
    """The same for the memberships a streamed run is about to read, once as it begins.

    An audience imported a minute ago has no statistics yet; PostgreSQL then reads each page by a
    bitmap scan of the whole rest of the audience and a sort (280 ms a page at 1,000,000 members,
    2,000 people/s; 1 ms a page once analysed). A fixed-size sample: well under a second.
    """
    analyze(Membership)


def analyze(model: type[models.Model]) -> None:
    if db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def queue_for(scope: Scope, seconds: float, *, chunk_size: int = CHUNK_SIZE) -> tuple[ResyncRun, bool]:
    """Start (or resume) a resync and queue chunks for about `seconds`; True when all of it is queued.

    At least one chunk is queued per call, and the budget is checked between chunks (each
    chunk commits with its checkpoint), so a caller that stops here loses nothing.
    """
    run, _ = start(scope)
    deadline = time.monotonic() + seconds
    chunks = queue(run, scope, chunk_size=chunk_size)
    for _ in chunks:
        if time.monotonic() >= deadline:
            chunks.close()  # the run stays unfinished: the next call resumes it from the checkpoint
            return run, False
    return run, True


def queue_all(scope: Scope, *, chunk_size: int = CHUNK_SIZE) -> ResyncRun:
    """Start (or resume) a resync and queue all of it; workers are woken as chunks commit."""
    run, _ = start(scope)
    for _ in queue(run, scope, chunk_size=chunk_size):
        pass
    return run


def finish(run: ResyncRun) -> None:
    """The run's range is done (or it ended). A run split into lanes (lanes.py) is finished once
    every range is: each range finishing takes the run's row lock, so the last one sees the others."""
    now = timezone.now()
    if run.lane_of_id is None and run.lane_end is None:
        run.status, run.finished_at = ResyncRun.Status.DONE, now
        run.save(update_fields=["status", "finished_at", "updated_at"])
        return
    whole = ResyncRun.objects.filter(pk=run.whole_run_id)
    with transaction.atomic():
        parent = whole.select_for_update().get()
        if run.lane_of_id is not None:
            ResyncRun.objects.filter(pk=run.pk).update(status=ResyncRun.Status.DONE, finished_at=now, updated_at=now)
            run.status, run.finished_at = ResyncRun.Status.DONE, now
        elif parent.last_profile_id < parent.lane_end:
            # The run's own range is done: its checkpoint at the range's end says so.
            whole.update(last_profile_id=parent.lane_end, updated_at=now)
            parent.last_profile_id = run.last_profile_id = parent.lane_end
        lanes_left = ResyncRun.objects.filter(lane_of_id=parent.pk).exclude(status=ResyncRun.Status.DONE)
        if parent.last_profile_id >= parent.lane_end and not lanes_left.exists():
            whole.update(status=ResyncRun.Status.DONE, finished_at=now, updated_at=now)
            if run.lane_of_id is None:
                run.status, run.finished_at = ResyncRun.Status.DONE, now


def interrupt(run: ResyncRun) -> None:
    """Mark a run (all its lanes) stopped before everything was queued; the next start of its scope resumes it."""
    family = models.Q(pk=run.whole_run_id) | models.Q(lane_of_id=run.whole_run_id)
    ResyncRun.objects.filter(family, status=ResyncRun.Status.RUNNING).update(
        status=ResyncRun.Status.INTERRUPTED, updated_at=timezone.now()
    )
    run.status = ResyncRun.Status.INTERRUPTED


def pending_profiles(run: ResyncRun) -> int:
    """The run's profiles still in the outbox (queued, in backoff, or being sent)."""
    return _pending(run).count()


def has_pending(run: ResyncRun) -> bool:
    """Whether any of the run's profiles is still in the outbox (cheap, unlike counting them)."""
    return _pending(run).exists()


def _pending(run: ResyncRun) -> QuerySet[Forward]:
    return Forward.objects.filter(connection_id=run.connection_id, reason=run.reason, audience_id=run.audience_id)


def outcomes(run: ResyncRun) -> RunCounts:
    """What became of the run's people so far: its batch requests (a streamed run), and the resync
    deliveries of its connection since it started (a queued run's, and the people a streamed run
    could not send: skipped, cancelled, or beyond a Customer.io limit)."""
    deliveries = Delivery.objects.filter(
        connection_id=run.connection_id, reason=Forward.Reason.RESYNC, created_at__gte=run.started_at
    )
    final = deliveries.exclude(status=Delivery.Status.RETRYING)
    counts = {row["status"]: row["n"] for row in final.values("status").annotate(n=Count("id"))}
    sent = _batch_outcomes(run)
    return RunCounts(
        succeeded=counts.get(Delivery.Status.SUCCEEDED, 0) + sent.succeeded,
        failed=counts.get(Delivery.Status.FAILED, 0) + sent.failed,
        skipped=counts.get(Delivery.Status.SKIPPED, 0),
        cancelled=counts.get(Delivery.Status.CANCELLED, 0),
        requests=deliveries.exclude(request_id=None).values("request_id").distinct().count() + sent.requests,
    )


def _batch_outcomes(run: ResyncRun) -> RunCounts:
    """A streamed run's people by the final answer to their identify (a page sent again counts once)."""
    counts = RunCounts(requests=BatchDelivery.objects.filter(run_id=run.pk).count())
    answered = BatchDelivery.objects.filter(
        run_id=run.pk,
        action="identify",
        status__in=(BatchDelivery.Status.SUCCEEDED, BatchDelivery.Status.PARTIAL, BatchDelivery.Status.FAILED),
    )
    for status, people, item_errors in answered.values_list("status", "people", "item_errors").iterator():
        rejected = people if status == BatchDelivery.Status.FAILED else len(item_errors or {})
        counts.succeeded += people - rejected
        counts.failed += rejected
    return counts


def preview(scope: Scope, *, chunk_size: int = PREVIEW_CHUNK_SIZE) -> Iterator[Planned]:
    """What a resync would send, profile by profile, computed exactly as the worker does. Writes nothing."""
    audience_pk = scope.audience.pk if scope.audience is not None else None
    after = 0
    while ids := next_profile_ids(scope, after, chunk_size):
        rows = [ClaimedRow(0, profile_id, audience_pk, Forward.Reason.RESYNC, 0) for profile_id in ids]
        yield from plan(scope.connection, rows)
        after = ids[-1]
