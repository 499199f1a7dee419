"""Claims on the outbox: which worker holds which `Forward` rows, and for how long.

    claim (SKIP LOCKED on PostgreSQL + a conditional UPDATE, re-checked after commit)
      -> renew before each request (the lease runs out only when its worker is gone)
      -> the rows are deleted by their own token once sent, or put back with `requeue`

A profile is only claimed when no other live claim holds a row of it, so two workers never
send the same profile at once and a later request can never overtake an earlier one. A dead
worker's lease (`FORWARD_CLAIM_SECONDS`) runs out and the sweep hands its rows to another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from connections.models import Forward
from connections.services.forwarding.payloads import ClaimedRow
from connections.services.outbox import inflight
from connections.services.outbox.bulk import in_values


def unclaimed(now: datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def lease_end(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)


def claim(connection_id: int, limit: int) -> tuple[str, list[ClaimedRow]]:
    """Claim the due rows of up to `limit` profiles, plus every other unclaimed row of them."""
    token = uuid.uuid4().hex
    now = timezone.now()
    # `claim_token <> ''` lets PostgreSQL answer from the small partial index of claimed rows.
    held_elsewhere = Forward.objects.filter(
        connection_id=connection_id, profile_id=OuterRef("profile_id"), claimed_until__gt=now
    ).exclude(claim_token="")
    with transaction.atomic():
        due = (
            Forward.objects.filter(connection_id=connection_id, due_at__lte=now)
            .filter(unclaimed(now))
            .exclude(Exists(held_elsewhere))
            .exclude(inflight.in_flight(connection_id, now))  # a streamed page holds them (inflight.py)
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("profile_id", flat=True)[:limit]
        )
        profile_ids = set(due)
        if not profile_ids:
            return token, []
        ids = list(
            Forward.objects.filter(connection_id=connection_id, profile_id__any=profile_ids)
            .filter(unclaimed(now))
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        # The condition is re-checked by the UPDATE itself: on databases without row
        # locks (SQLite) this is what keeps two workers from taking the same row.
        Forward.objects.filter(id__any=ids).filter(unclaimed(now)).update(
            claim_token=token, claimed_until=lease_end(now)
        )
    give_up_contested(connection_id, token, now)
    rows = [
        ClaimedRow(*values)
        for values in Forward.objects.filter(claim_token=token).values_list(
            "id", "profile_id", "audience_id", "reason", "attempts"
        )
    ]
    return token, rows


def give_up_contested(connection_id: int, token: str, now: datetime) -> None:
    """Put back our rows of any profile that another live claim also holds.

    Two claims running at the same moment can each take a different row of one profile
    (each skips the row the other has locked). Checked after both committed, at least one
    of them sees the other and backs off, so a profile is never sent twice at once and a
    later request can never overtake an earlier one. The rows put back are due at once.

    A streamed run's page that was marked in flight while this claim was being taken holds its
    people too (outbox/inflight.py): they are put back, and claimed once the page is answered.
    """
    ours = Forward.objects.filter(claim_token=token).values("profile_id")
    contested = (
        Forward.objects.filter(connection_id=connection_id, profile_id__in=ours, claimed_until__gt=now)
        .exclude(claim_token="")
        .exclude(claim_token=token)
        .values_list("profile_id", flat=True)
    )
    contested_ids = set(contested)
    contested_ids |= inflight.held_profiles(
        connection_id, Forward.objects.filter(claim_token=token).values_list("profile_id", flat=True), now
    )
    if contested_ids:
        ids = Forward.objects.filter(claim_token=token, profile_id__any=contested_ids).values_list("id", flat=True)
        requeue(token, list(ids))


def renew(token: str, row_ids: list[int]) -> set[int]:
    """Extend the lease of rows about to be sent; returns those still ours.

    A claim whose lease ran out (a very slow send) may have been taken over by another
    worker, which then sends newer state: this worker must not send its older plan after it.

    Only a lease with less than half of `FORWARD_CLAIM_SECONDS` left is extended: right after
    a claim (a v2 batch's only request) rewriting a thousand rows' lease would buy nothing but
    cost as much as the claim itself, and half a lease still outlasts a request's timeout.
    """
    now = timezone.now()
    half = timedelta(seconds=settings.FORWARD_CLAIM_SECONDS / 2)
    ending = Forward.objects.filter(claim_token=token, id__any=row_ids, claimed_until__lt=now + half)
    if ending.update(claimed_until=lease_end(now)) == len(row_ids):
        return set(row_ids)
    # A claim holds a few thousand rows at most: reading them all by the token's index is cheaper
    # than asking the database which of `row_ids` they are.
    return set(Forward.objects.filter(claim_token=token).values_list("id", flat=True)).intersection(row_ids)


def delete(token: str, row_ids: Iterable[int]) -> None:
    """Rows sent (or settled for good): only their own claim may delete them."""
    Forward.objects.filter(claim_token=token, id__any=list(row_ids)).delete()


def requeue(token: str, row_ids: list[int], *, due_at: datetime | None = None, attempts: int | None = None) -> None:
    """Give rows back to the outbox, unclaimed: untouched, or with a new due time and attempt count.

    The outbox keeps one waiting row per (connection, profile, audience). A change that came in
    while these rows were out already queued that waiting row; it is newer, so it wins and ours
    is dropped (its payload is computed at send time anyway). Copy-then-delete makes that an
    INSERT ... ON CONFLICT DO NOTHING, which no concurrent writer can make fail.
    """
    if not row_ids:
        return
    table = Forward._meta.db_table
    ids_sql, ids_args = in_values(db_connection, "id", row_ids)
    adapted = db_connection.ops.adapt_datetimefield_value(due_at) if due_at is not None else None
    due_sql, due_args = ("%s", [adapted]) if due_at is not None else ("due_at", [])
    attempts_sql, attempts_args = ("%s", [attempts]) if attempts is not None else ("attempts", [])
    with transaction.atomic(), db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (connection_id, profile_id, audience_id, reason, created_at, due_at, attempts,"  # noqa: S608
            f" claim_token, claimed_until) SELECT connection_id, profile_id, audience_id, reason, created_at,"
            f" {due_sql}, {attempts_sql}, '', NULL FROM {table} WHERE claim_token = %s AND {ids_sql}"
            # Every outbox writer's insertion order (outbox._order): a writer queueing the same
            # keys meanwhile waits for this one instead of deadlocking with it.
            " ORDER BY connection_id, profile_id, COALESCE(audience_id, 0) ON CONFLICT DO NOTHING",
            [*due_args, *attempts_args, token, *ids_args],
        )
        cursor.execute(
            f"DELETE FROM {table} WHERE claim_token = %s AND {ids_sql}",  # noqa: S608
            [token, *ids_args],
        )


def release(token: str) -> None:
    """Give back every row of a claim, untouched (an error stopped its worker)."""
    requeue(token, list(Forward.objects.filter(claim_token=token).values_list("id", flat=True)))
