"""When a connection needs someone's attention: pure rules, data in, problems out (no database).

Three problems (SPEC section 13):

- faulted: Customer.io rejected the credentials; nothing is sent until a person resumes it;
- backing off for longer than `backing_off_after`: Customer.io keeps failing and the breaker has
  been probing for a while (a short outage heals by itself and should not wake anybody);
- backlog older than `backlog_after`: a change has waited that long to be sent. Not raised while
  the connection is faulted or backing off: the backlog then ages because of the problem already
  reported, and one email says it better than two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FAULTED = "faulted"
BACKING_OFF = "backing_off"
BACKLOG = "backlog"


@dataclass(frozen=True)
class Thresholds:
    backing_off_after: timedelta
    backlog_after: timedelta


@dataclass(frozen=True)
class ConnectionSnapshot:
    state: str  # Connection.State's values
    state_since: datetime | None  # when it entered that state, if known
    oldest_waiting: datetime | None  # created_at of its oldest outbox row; None when nothing waits
    last_error: str = ""


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hours {minutes % 60} minutes"


def problems(snapshot: ConnectionSnapshot, thresholds: Thresholds, now: datetime) -> dict[str, str]:
    """Each problem the connection has now, with a sentence saying what was seen."""
    found: dict[str, str] = {}
    if snapshot.state == FAULTED:
        found[FAULTED] = "Customer.io rejected the credentials; forwards wait until the connection is resumed."
    elif snapshot.state == BACKING_OFF:
        # Without a known start, the state cannot be shown to be short-lived: report it.
        lasted = now - snapshot.state_since if snapshot.state_since else None
        if lasted is None or lasted >= thresholds.backing_off_after:
            how_long = f"for {_minutes(lasted)}" if lasted is not None else "since an unknown time"
            found[BACKING_OFF] = (
                f"Customer.io has kept failing {how_long}; one probe at a time is sent until it answers."
            )
    elif snapshot.oldest_waiting is not None:
        waited = now - snapshot.oldest_waiting
        if waited >= thresholds.backlog_after:
            found[BACKLOG] = f"The oldest change waiting to be sent has waited {_minutes(waited)}."
    return found
