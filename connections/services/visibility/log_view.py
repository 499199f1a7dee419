"""The forwarding log as the admin shows it: search, and the attempts of one delivery linked together.

What links attempts: the outbox keeps one row per (connection, profile) and counts its attempts,
and each attempt writes a log row for that connection and profile with the same action (an
identify, a segment request for one segment, an erasure call). A transient failure puts the
outbox row back and the next attempt follows; a failure an administrator retries queues a fresh
row (reason "retry"). So the attempts of a delivery are the log rows of the same connection,
profile, action and segment, in order. Rows whose profile is gone (deleted or erased) link to
nothing: they cannot be retried, and an erased person must not be found again.

Everything here is cheap on millions of rows: the links are correlated subqueries with LIMIT 1
on the profile index, evaluated only for the rows of the page shown and only where needed (a
failed row looks forward, a retry looks back), and the linked rows are read in one query.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import BigIntegerField, Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from connections.models import Delivery, Forward, Profile

# A row that did not get through: what a later attempt can settle.
UNSETTLED = (Delivery.Status.FAILED, Delivery.Status.RETRYING, Delivery.Status.CANCELLED)
ATTEMPTS_SHOWN = 20  # on a delivery's page, at most this many attempts around it
LINKS = ("later_success", "next_attempt", "previous_attempt")
LINKED_FIELDS = ("pk", "status", "reason", "attempt", "created_at", "finished_at")


def search(queryset: QuerySet[Delivery], term: str) -> QuerySet[Delivery]:
    """Rows whose customer ID starts with `term`, or of the people whose email is `term` (any case).

    Both are index lookups: the prefix on the log's customer ID index (varchar_pattern_ops on
    PostgreSQL, so LIKE 'x%' can use it), the email on the profiles' UPPER(email) index, whose
    few profile ids are then matched on the log's profile index.
    """
    term = term.strip()
    if not term:
        return queryset
    condition = Q(customer_id__startswith=term)
    if "@" in term:
        people = list(Profile.objects.filter(email__iexact=term).values_list("pk", flat=True))
        if people:
            condition |= Q(profile_id__in=people)
    return queryset.filter(condition)


def is_retry(delivery: Delivery) -> bool:
    """A second or later attempt, or one queued by "Retry" in the admin."""
    return delivery.attempt > 1 or delivery.reason == Forward.Reason.RETRY


def _same_delivery() -> QuerySet[Delivery]:
    """The log rows of the outer row's connection, profile, action and segment."""
    return (
        Delivery.objects.filter(
            connection_id=OuterRef("connection_id"), profile_id=OuterRef("profile_id"), action=OuterRef("action")
        )
        .alias(segment=Coalesce("segment_id", Value(0)))
        .filter(segment=Coalesce(OuterRef("segment_id"), Value(0)))
    )


def _link(when: Q, rows: QuerySet[Delivery]) -> Case:
    return Case(When(when, then=Subquery(rows.values("pk")[:1])), default=None, output_field=BigIntegerField())


def with_links(queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
    """Annotate each row with the ids of its linked attempts (None where there is none).

    later_success_id: for a row that did not get through, the first later success.
    next_attempt_id: for such a row, the attempt right after it (whatever its outcome).
    previous_attempt_id: for a retry, the latest earlier attempt that did not get through.
    """
    unsettled = Q(status__in=UNSETTLED, profile__isnull=False)
    retry = Q(profile__isnull=False) & (Q(attempt__gt=1) | Q(reason=Forward.Reason.RETRY))
    later = _same_delivery().filter(pk__gt=OuterRef("pk"))
    return queryset.annotate(
        later_success_id=_link(unsettled, later.filter(status=Delivery.Status.SUCCEEDED).order_by("pk")),
        next_attempt_id=_link(unsettled, later.order_by("pk")),
        previous_attempt_id=_link(
            retry, _same_delivery().filter(pk__lt=OuterRef("pk"), status__in=UNSETTLED).order_by("-pk")
        ),
    )


def attach_links(rows: Iterable[Delivery]) -> None:
    """Set `later_success`, `next_attempt` and `previous_attempt` (a Delivery or None) on each row.

    Two queries for a whole page, whatever its size: the links of these rows (`with_links` over
    their ids, so the list's own query and its count stay plain), then the linked rows.
    """
    rows = list(rows)
    ids = [f"{name}_id" for name in LINKS]
    links = {
        values["pk"]: values
        for values in with_links(Delivery.objects.filter(pk__in=[row.pk for row in rows])).values("pk", *ids)
    }
    wanted = {values[name] for values in links.values() for name in ids} - {None}
    found = Delivery.objects.only(*LINKED_FIELDS).in_bulk(wanted) if wanted else {}
    for row in rows:
        for name in LINKS:
            setattr(row, name, found.get(links.get(row.pk, {}).get(f"{name}_id")))


def attempts_of(delivery: Delivery) -> list[Delivery]:
    """The attempts of the delivery this row belongs to, oldest first, this row included.

    The run of the same connection, profile, action and segment that ends with a success: from
    the row after the previous success (or the first) to the next success (or the last), at most
    ATTEMPTS_SHOWN around this row. Only this row for one whose profile is gone.
    """
    if delivery.profile_id is None:
        return [delivery]
    same = Delivery.objects.filter(
        connection_id=delivery.connection_id,
        profile_id=delivery.profile_id,
        action=delivery.action,
        segment_id=delivery.segment_id,
    ).only(*LINKED_FIELDS, "http_status", "error")
    succeeded = Delivery.Status.SUCCEEDED
    before = list(same.filter(pk__lt=delivery.pk).order_by("-pk")[:ATTEMPTS_SHOWN])
    earlier = []
    for row in before:
        if row.status == succeeded:
            break
        earlier.append(row)
    after = []
    if delivery.status != succeeded:
        for row in same.filter(pk__gt=delivery.pk).order_by("pk")[:ATTEMPTS_SHOWN]:
            after.append(row)
            if row.status == succeeded:
                break
    return [*reversed(earlier), delivery, *after]
