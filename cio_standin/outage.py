"""A Customer.io outage on demand: for a given time every Track request fails the same way.

Modes, as a client sees them:
- ``"503"``: every request is answered 503 Service Unavailable (no Retry-After);
- ``"hang"``: requests are read and never answered until the outage ends (the client's
  timeout fires first), then the connection is closed;
- ``"refuse"``: the stand-in stops listening, so connections are refused; it listens again on
  the same port when the outage ends (the control API is unreachable meanwhile too).

The control API itself is never affected by the first two modes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

MODES = ("503", "hang", "refuse")


@dataclass(frozen=True)
class Outage:
    mode: str
    ends_at: float  # time.monotonic()

    @classmethod
    def start(cls, mode: str, seconds: float) -> Outage:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 24 * 3600:
            raise ValueError("seconds must be a number above 0 and at most 86400")
        return cls(mode, time.monotonic() + float(seconds))

    @property
    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "remaining_seconds": round(self.remaining, 3)}


class OutageSwitch:
    """The current outage, if any, shared by every handler thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self.failed_requests = 0  # Track requests answered by the outage (503 or hang)

    def set(self, outage: Outage | None) -> None:
        with self._lock:
            self._outage = outage

    def current(self) -> Outage | None:
        with self._lock:
            if self._outage is not None and self._outage.remaining <= 0:
                self._outage = None
            return self._outage

    def count_failed(self) -> None:
        with self._lock:
            self.failed_requests += 1
