"""A streamed run's request in flight, and what must wait for it (issue 29).

A streamed activation, rename or resync sends a page of people in one request, with no outbox
row per person. Its `ResyncRun` marks the page before reading it: the profiles above the
checkpoint up to `inflight_to`, for as long as the run's lease lasts. Two rules keep an older
page from overwriting a newer change in Customer.io:

- a change's claim skips people inside a live mark (`in_flight`), and a claim committed just as a
  mark was being written gives those people back after it commits (`claims.give_up_contested`);
- the page leaves out people a live change claim already holds, and queues them in the outbox
  instead (`resync.pages`), so the change path sends them after their change, with the run's
  audience too.

Either the claim commits before the mark (the page sees it and leaves the person out) or after
it (the claim's check after its commit sees the mark and gives the person back): both sides
write, commit, then read what the other wrote, so at least one of them sees the other.

An erasure waits for a live mark too (`fences`): its call to Customer.io goes a request's timeout
after the mark's lease ends, so the call is Customer.io's last word on the person.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from connections.models import ResyncRun


def live_marks(now: datetime) -> QuerySet[ResyncRun]:
    """Runs with a page in flight whose lease has not run out."""
    return ResyncRun.objects.filter(status=ResyncRun.Status.RUNNING, inflight_to__isnull=False, claimed_until__gt=now)


def covering(profile_id: object) -> Q:
    """Marks whose range holds `profile_id` (a value or an OuterRef)."""
    return Q(last_profile_id__lt=profile_id, inflight_to__gte=profile_id)


def in_flight(connection_id: int, now: datetime) -> Exists:
    """For a query of outbox rows: the row's person is inside a live mark of its connection."""
    return Exists(live_marks(now).filter(covering(OuterRef("profile_id")), connection_id=connection_id))


def held_profiles(connection_id: int, profile_ids: Iterable[int], now: datetime) -> set[int]:
    """Those of the profiles inside a live mark of the connection."""
    ranges = list(live_marks(now).filter(connection_id=connection_id).values_list("last_profile_id", "inflight_to"))
    if not ranges:
        return set()
    return {p for p in profile_ids if any(low < p <= high for low, high in ranges)}


def fences(profile_ids: list[int]) -> dict[int, datetime]:
    """Per connection with a live mark holding any of the profiles: when an erasure call may go."""
    now = timezone.now()
    grace = timedelta(seconds=settings.CUSTOMERIO_TIMEOUT)
    found: dict[int, datetime] = {}
    if not profile_ids:
        return found
    holding = Q()
    for profile_id in profile_ids:
        holding |= covering(profile_id)
    for connection_id, until in live_marks(now).filter(holding).values_list("connection_id", "claimed_until"):
        due = until + grace
        found[connection_id] = max(due, found.get(connection_id, due))
    return found
