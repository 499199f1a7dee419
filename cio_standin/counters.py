"""The stand-in's counters: requests by status per workspace, and the 1-second windows behind its
rate limit and the peak request rates it reports (``/_standin/stats``)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Window:
    """Request times of one workspace within the last second, and the peak counts seen."""

    received: deque[float] = field(default_factory=deque)
    accepted: deque[float] = field(default_factory=deque)  # those not rate limited
    max_received: int = 0
    max_accepted: int = 0


@dataclass
class Counters:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    invalid_bodies: int = 0
    validated_bodies: int = 0
    actions_applied: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "invalid_bodies": self.invalid_bodies,
            "validated_bodies": self.validated_bodies,
            "actions_applied": self.actions_applied,
        }


def drop_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()
