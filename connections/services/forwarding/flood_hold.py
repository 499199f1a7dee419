"""Holding a connection's sends while its changes keep arriving, so a flood is sent about once per person.

During a flood (an audience's first sync, a burst of Firehose messages) the same people change
again and again within a second. Sending as fast as rows become due sends each person once per
change, and the sends compete with the ingestion for the same CPU and database. Instead a worker
claims a connection's due rows only when

- no row became due for `quiet` seconds (the changes paused: the flood is over, or a lone change), or
- the oldest due row has waited `ceiling` seconds (a flood that never pauses is still sent at
  that pace, so freshness stays bounded by about `ceiling` plus a send).

A backlog (an outage, a resync) has old rows and is sent at once. `seconds_to_hold` is the pure
rule; `hold` reads the two times from the outbox and makes one task per connection the one that
comes back (`Connection.forward_hold_until`): the others return, and should that task be lost,
the next wake-up after the hold or the periodic sweep sends the rows (nothing waits for ever).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connections.models import Connection, Forward
from connections.services.forwarding.claims import unclaimed

__all__ = ["hold", "seconds_to_hold"]


def seconds_to_hold(
    oldest_due: datetime | None, newest_due: datetime | None, now: datetime, quiet: float, ceiling: float
) -> float:
    """How long to wait before claiming; 0 means claim now (nothing due, or holding is off)."""
    if oldest_due is None or newest_due is None or quiet <= 0:
        return 0.0
    until = min(newest_due + timedelta(seconds=quiet), oldest_due + timedelta(seconds=max(ceiling, 0.0)))
    return max(0.0, (until - now).total_seconds())


def hold(connection_id: int, held_until: datetime | None = None) -> tuple[float, datetime | None]:
    """(seconds to hold, the hold's end if this caller must come back then; None: another will).

    `held_until` is the hold a returning task was scheduled for: it may take it again.
    """
    quiet = settings.FORWARD_HOLD_QUIET_SECONDS
    if quiet <= 0:
        return 0.0, None
    now = timezone.now()
    due = (
        Forward.objects.filter(connection_id=connection_id, due_at__lte=now)
        .filter(unclaimed(now))
        .values_list("due_at", flat=True)
    )
    oldest, newest = due.order_by("due_at").first(), due.order_by("-due_at").first()
    seconds = seconds_to_hold(oldest, newest, now, quiet, settings.FORWARD_HOLD_MAX_SECONDS)
    if seconds <= 0:
        return 0.0, None
    until = now + timedelta(seconds=seconds)
    free = Q(forward_hold_until__isnull=True) | Q(forward_hold_until__lte=now)
    if held_until is not None:
        free |= Q(forward_hold_until=held_until)
    taken = Connection.objects.filter(free, pk=connection_id).update(forward_hold_until=until)
    return seconds, (until if taken else None)
