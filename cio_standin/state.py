"""What the stand-in remembers: workspaces, people and segments, recorded requests, counters, faults.

Every request handler thread goes through one ``State``; all mutation happens under one lock
and each critical section is a few dict and deque operations, so that thousands of requests
per second do not queue on it.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .counters import Counters, Window, drop_before
from .model import Faults, RecordedRequest, Workspace
from .outage import OutageSwitch
from .people import Directory

# Invalid requests are kept even when recording is off (they are what a test wants to see);
# this bounds the memory a broken benchmark client can take.
MAX_INVALID_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Admission:
    """The stand-in's decision on an authenticated request before it looks at the body."""

    now: float  # time.monotonic(), taken under the lock so windows see ordered times
    wall_time: float
    retry_after: int | None = None  # set: rate limited, answer 429
    fault: str | None = None  # "drop", "timeout" or "status"
    fault_status: int | None = None
    delay: float = 0.0  # seconds to wait before answering


class State:
    def __init__(
        self,
        workspaces: Iterable[Workspace] = (),
        *,
        validate_share: float = 1.0,
        seed: int | None = 0,
        faults: Faults | None = None,
        record_requests: bool = True,
        record_bodies: bool = True,
    ) -> None:
        if not 0 <= validate_share <= 1:
            raise ValueError("validate_share must be from 0 to 1")
        self.lock = threading.Lock()
        # Writes apply under this lock, and a reset takes it too (before `lock`): see apply_write.
        self._writes = threading.Lock()
        self._generation = 0
        self.validate_share = validate_share
        self.record_requests = record_requests
        self.record_bodies = record_bodies
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults = faults or Faults()
        self.outage = OutageSwitch()
        if self._faults.seed is not None:
            self._rng.seed(self._faults.seed)
        self._workspaces: dict[str, Workspace] = {}
        # "Basic <base64>" header -> workspace, so a known client costs one dict look-up.
        self._by_header: dict[str, Workspace] = {}
        self._by_app_key: dict[str, Workspace] = {}  # "Bearer <App API key>" -> workspace
        for workspace in workspaces:
            self.add_workspace(workspace)
        self._clear()

    def _clear(self) -> None:
        self.directory = Directory(self.lock)
        self._records: list[RecordedRequest] = []
        self._invalid: list[RecordedRequest] = []
        self._next_index = 0
        self._totals = Counters()
        self._per_site: dict[str, Counters] = {}
        self._unauthenticated = 0
        self._fault_counts: Counter[str] = Counter()
        self._windows: dict[str, Window] = {}
        self._validate_credit = 0.0

    # --- workspaces and auth ------------------------------------------------------------

    def add_workspace(self, workspace: Workspace) -> None:
        """Add a workspace, or replace the one with the same site ID (its people are kept)."""
        header = "Basic " + base64.b64encode(
            f"{workspace.site_id}:{workspace.api_key}".encode()
        ).decode("ascii")
        with self.lock:
            old = self._workspaces.get(workspace.site_id)
            if old is not None:
                self._by_header = {h: w for h, w in self._by_header.items() if w is not old}
                self._by_app_key = {h: w for h, w in self._by_app_key.items() if w is not old}
            self._workspaces[workspace.site_id] = workspace
            self._by_header[header] = workspace
            if workspace.app_api_key:
                self._by_app_key[f"Bearer {workspace.app_api_key}"] = workspace

    def workspaces(self) -> list[Workspace]:
        with self.lock:
            return list(self._workspaces.values())

    def authenticate(self, authorization: str | None) -> Workspace | None:
        """The workspace whose HTTP Basic credentials these are, or None."""
        if not authorization:
            return None
        workspace = self._by_header.get(authorization)
        if workspace is not None:
            return workspace
        # Not the canonical encoding (different scheme case, padding, spacing): decode it.
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        site_id, _, api_key = decoded.partition(":")
        workspace = self._workspaces.get(site_id)
        if workspace is None or workspace.api_key != api_key:
            return None
        return workspace

    def authenticate_app(self, authorization: str | None) -> Workspace | None:
        """The workspace whose App API key this ``Bearer`` header carries, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._by_app_key.get(f"Bearer {token.strip()}")

    # --- admission: rate limit and faults -------------------------------------------------

    def admit(self, workspace: Workspace, *, is_write: bool, path: str = "") -> Admission:
        """Count the request in the workspace's 1-second windows, apply its rate limit, and
        draw the fault (if any) for a write request."""
        with self.lock:
            now = time.monotonic()
            wall = time.time()
            window = self._windows.get(workspace.site_id)
            if window is None:
                window = self._windows[workspace.site_id] = Window()
            cutoff = now - 1.0
            drop_before(window.received, cutoff)
            window.received.append(now)
            window.max_received = max(window.max_received, len(window.received))
            drop_before(window.accepted, cutoff)
            limit = workspace.rate_limit
            if limit is not None and len(window.accepted) >= limit:
                # The oldest accepted request leaves the window at accepted[0] + 1 s.
                wait = window.accepted[0] + 1.0 - now
                return Admission(now, wall, retry_after=max(1, math.ceil(wait)))
            window.accepted.append(now)
            window.max_accepted = max(window.max_accepted, len(window.accepted))
            if not is_write:
                return Admission(now, wall)
            return self._draw_fault(now, wall, workspace.site_id, path)

    def _draw_fault(self, now: float, wall: float, site_id: str, path: str = "") -> Admission:
        faults = self._faults
        if not faults.active or (faults.site_id is not None and faults.site_id != site_id):
            return Admission(now, wall)
        if faults.path_contains is not None and faults.path_contains not in path:
            return Admission(now, wall)
        fault, status = None, None
        if faults.drop_share or faults.timeout_share or faults.share:
            # One draw for the exclusive outcomes keeps each share exact and repeatable.
            draw = self._rng.random()
            if draw < faults.drop_share:
                fault = "drop"
            elif draw < faults.drop_share + faults.timeout_share:
                fault = "timeout"
            elif draw < faults.drop_share + faults.timeout_share + faults.share:
                fault, status = "status", self._rng.choice(faults.statuses)
        delay = 0.0
        if faults.delay_ms and faults.delay_share and (
            faults.delay_share >= 1 or self._rng.random() < faults.delay_share
        ):
            delay = faults.delay_ms / 1000
        return Admission(now, wall, fault=fault, fault_status=status, delay=delay)

    def draw_item_failures(self, site_id: str, count: int) -> list[bool]:
        """For each of ``count`` batch actions, whether to fail it with an injected 207 error."""
        faults = self._faults
        share = faults.partial_207_share
        if not share or (faults.site_id is not None and faults.site_id != site_id):
            return [False] * count
        with self.lock:
            return [self._rng.random() < share for _ in range(count)]

    def should_validate(self) -> bool:
        """Whether to validate this body. Deterministic sampling: with a share of 0.25 every
        fourth body is validated, so a benchmark's load is even and repeatable."""
        share = self.validate_share
        if share >= 1:
            return True
        if share <= 0:
            return False
        with self.lock:
            self._validate_credit += share
            if self._validate_credit >= 1:
                self._validate_credit -= 1
                return True
            return False

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self._faults = faults
            if faults.seed is not None:
                self._rng.seed(faults.seed)

    def count_fault(self, kind: str, amount: int = 1) -> None:
        with self.lock:
            self._fault_counts[kind] += amount

    # --- people and segments: people.py, under this lock --------------------------------

    def count_applied(self, site_id: str, amount: int = 1) -> None:
        with self.lock:
            self._counters(site_id).actions_applied += amount
            self._totals.actions_applied += amount

    def merge_person(self, site_id: str, identifier: str, attributes: dict[str, Any]) -> bool:
        """A v1 identify (the path names the person by id or email); False when ``_update``
        found no such person, so nothing was created."""
        applied = self.directory.merge_person(site_id, identifier, attributes)
        self.count_applied(site_id)
        return applied

    def apply_actions(self, site_id: str, actions: list[tuple[str, str, str, dict[str, Any]]]) -> list[str]:
        """Apply ``(action, identifier kind, value, attributes)`` from a batch, in order; returns
        the values of ``_update`` identifies that matched nobody."""
        not_created = self.directory.apply_actions(site_id, actions)
        self.count_applied(site_id, len(actions))
        return not_created

    def people(self, site_id: str) -> dict[str, dict[str, Any]]:
        return self.directory.people(site_id)

    def tally(self, site_id: str, attribute: str | None) -> dict[str, Any]:
        return self.directory.tally(site_id, attribute)

    # --- recording ------------------------------------------------------------------------

    def _counters(self, site_id: str) -> Counters:
        counters = self._per_site.get(site_id)
        if counters is None:
            counters = self._per_site[site_id] = Counters()
        return counters

    def record(self, record: RecordedRequest) -> None:
        """Count the request and keep it (see record_requests / record_bodies)."""
        status = "dropped" if record.status is None else str(record.status)
        with self.lock:
            record.index = self._next_index
            self._next_index += 1
            targets = [self._totals]
            if record.site_id is not None:
                targets.append(self._counters(record.site_id))
            else:
                self._unauthenticated += 1
            for counters in targets:
                counters.requests += 1
                counters.by_status[status] += 1
                if record.valid is not None:
                    counters.validated_bodies += 1
                    if not record.valid:
                        counters.invalid_bodies += 1
            if record.fault is not None:
                self._fault_counts[record.fault] += 1
            if record.valid is False and len(self._invalid) < MAX_INVALID_KEPT:
                self._invalid.append(record)
            if self.record_requests:
                if not self.record_bodies and record.valid is not False:
                    record.body = None
                self._records.append(record)

    def requests(self, site_id: str | None = None, since: int = 0) -> list[RecordedRequest]:
        with self.lock:
            records = self._records if since <= 0 else self._records[since:]
            if site_id is None:
                return list(records)
            return [r for r in records if r.site_id == site_id]

    def page(self, site_id: str | None, since: int, limit: int) -> tuple[list[RecordedRequest], int]:
        """Up to ``limit`` records from list position ``since``; and where the next page starts."""
        with self.lock:
            found: list[RecordedRequest] = []
            position = max(since, 0)
            while position < len(self._records) and len(found) < limit:
                record = self._records[position]
                position += 1
                if site_id is None or record.site_id == site_id:
                    found.append(record)
            return found, position

    def invalid_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._invalid)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            workspaces = {}
            for site_id in sorted(set(self._workspaces) | set(self._per_site)):
                counters = self._per_site.get(site_id) or Counters()
                window = self._windows.get(site_id) or Window()
                workspace = self._workspaces.get(site_id)
                people, segments = self.directory.sizes_unlocked(site_id)
                workspaces[site_id] = {
                    **counters.to_json(),
                    "people": people,
                    "segments": segments,
                    "rate_limit": workspace.rate_limit if workspace else None,
                    "max_requests_in_1s": window.max_received,
                    "max_accepted_in_1s": window.max_accepted,
                }
            return {
                **self._totals.to_json(),
                "unauthenticated": self._unauthenticated,
                "faults": dict(self._fault_counts),
                "recorded": len(self._records),
                "workspaces": workspaces,
            }

    @property
    def generation(self) -> int:
        """How many resets this state has seen; a write remembers it when it is admitted."""
        return self._generation

    def apply_write(self, admitted_in: int, apply: Callable[[], None]) -> bool:
        """Apply a write admitted in generation ``admitted_in``, unless a reset came since.

        A reset forgets everything, the writes still in flight too: a delayed request admitted
        before it would otherwise land in whatever the stand-in holds next (a later test's fresh
        state, in the suite). Returns whether it was applied."""
        with self._writes:
            if admitted_in != self._generation:
                return False
            apply()
            return True

    def reset(self) -> None:
        """Forget people, segments, requests, counters and faults; keep the workspaces."""
        with self._writes, self.lock:
            self._generation += 1
            self._clear()
            self._faults = Faults()
            self._rng.seed(self._seed)
        self.outage.set(None)
        self.outage.failed_requests = 0
