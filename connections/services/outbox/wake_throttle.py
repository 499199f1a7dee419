"""When a committed change publishes a worker wake-up: at once, a moment later, or not at all.

A pure rule (no clock, no broker): `wakeup.wake_workers` asks it once per connection per commit.

During a flood every Firehose message commits outbox rows for the same connection, and one
wake-up task per message makes the workers spend their CPU on tasks that find their rows already
claimed. The rule publishes at most one wake-up per connection per `window` seconds from a
process (`window`, FORWARD_WAKE_WINDOW_SECONDS):

- the first change after a quiet window publishes at once (a lone change is not delayed);
- a change inside the window publishes one wake-up due at the window's end;
- a change while that wake-up is still ahead publishes nothing: the task runs after this change
  committed and claims its rows with the rest.

So every committed change is followed by a wake-up that starts after it, delayed by at most
`window`; should the broker lose one, the periodic sweep still finds the rows (SPEC section 4).
"""

from __future__ import annotations

import threading


class WakeThrottle:
    def __init__(self) -> None:
        self._last: dict[int, float] = {}  # connection -> when its latest wake-up is due
        self._lock = threading.Lock()

    def delay(self, connection_id: int, now: float, window: float) -> float | None:
        """Seconds until the wake-up this change needs, or None when one already ahead covers it."""
        if window <= 0:
            return 0.0
        with self._lock:
            last = self._last.get(connection_id)
            if last is not None and last > now:
                return None
            if last is None or now >= last + window:
                self._last[connection_id] = now
                return 0.0
            self._last[connection_id] = last + window
            return last + window - now

    def forget(self, connection_id: int | None = None) -> None:
        """Drop what was scheduled for a connection (its publish failed), or for all (a test's fresh broker)."""
        with self._lock:
            if connection_id is None:
                self._last.clear()
            else:
                self._last.pop(connection_id, None)
