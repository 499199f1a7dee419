"""How a claim's people travel, per transport: v2 batches, or v1 requests of one person each.

A transport says how many people a claim takes, how they are grouped, what a group waits for
before its lease is renewed, and sends the group; `worker.send_claimed` does everything else
(the lease, the log, the segments, the breaker) the same way for both.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from connections.customerio import ratelimit
from connections.customerio.client import CustomerIOClient, Outcome, SendResult
from connections.customerio.limits import pack_v2_batches, v2_action
from connections.models import Connection
from connections.services.forwarding.payloads import Planned

PersonOutcome = tuple[Planned, Outcome, str]


@dataclass(frozen=True)
class Request:
    """One request sent: what it got back, and what it meant for each person in it."""

    result: SendResult
    people: list[PersonOutcome]


class Transport(Protocol):
    def claim_size(self, *, probe: bool) -> int:
        """Profiles one claim takes (a probe: as many as its one request carries)."""
        ...

    def groups(self, sendable: list[Planned], *, probe: bool) -> list[list[Planned]]:
        """The people in the groups they are sent in, in order."""
        ...

    def before_group(self, connection: Connection) -> None:
        """What a group waits for before its lease is renewed (the rate limiter, for a one-request group)."""
        ...

    def send(self, client: CustomerIOClient, connection: Connection, group: list[Planned]) -> list[Request]: ...


class V2Batch:
    """Many people per request (`POST /api/v2/batch`), packed within Customer.io's limits."""

    def claim_size(self, *, probe: bool) -> int:
        return settings.FORWARD_BATCH_SIZE

    def groups(self, sendable: list[Planned], *, probe: bool) -> list[list[Planned]]:
        actions = [v2_action(p.identifier, p.attributes) for p in sendable]
        return [[sendable[i] for i in group] for group in pack_v2_batches(actions)]

    def before_group(self, connection: Connection) -> None:
        ratelimit.acquire(connection.pk, connection.rate_limit)

    def send(self, client: CustomerIOClient, connection: Connection, group: list[Planned]) -> list[Request]:
        batch = client.batch_identify([(p.identifier, p.attributes) for p in group])
        people = [(p, item.outcome, item.error) for p, item in zip(group, batch.items, strict=True)]
        return [Request(batch.overall, people)]


class V1PerPerson:
    """One `PUT /api/v1/customers/{id}` per person, a few at once, each through the rate limiter."""

    def claim_size(self, *, probe: bool) -> int:
        # A smaller claim keeps each payload close to the moment it is sent and leaves the rest
        # to other threads and workers.
        return 1 if probe else min(settings.FORWARD_BATCH_SIZE, settings.FORWARD_V1_CLAIM_SIZE)

    def groups(self, sendable: list[Planned], *, probe: bool) -> list[list[Planned]]:
        size = 1 if probe else settings.FORWARD_V1_CONCURRENCY
        return [sendable[i : i + size] for i in range(0, len(sendable), size)]

    def before_group(self, connection: Connection) -> None:
        """Nothing: each request of the group waits for the rate limiter itself."""

    def send(self, client: CustomerIOClient, connection: Connection, group: list[Planned]) -> list[Request]:
        results = _send_v1(client, connection, group)
        return [Request(result, [(p, result.outcome, result.error)]) for p, result in zip(group, results, strict=True)]


def for_connection(connection: Connection) -> Transport:
    return V1PerPerson() if connection.transport == Connection.Transport.V1 else V2Batch()


_v1_pool: ThreadPoolExecutor | None = None
_v1_pool_lock = threading.Lock()


def _send_v1(client: CustomerIOClient, connection: Connection, group: list[Planned]) -> list[SendResult]:
    """Send one v1 identify per profile, a few at once; results in the order of `group`."""
    global _v1_pool
    with _v1_pool_lock:
        if _v1_pool is None:
            _v1_pool = ThreadPoolExecutor(max_workers=settings.FORWARD_V1_CONCURRENCY, thread_name_prefix="cio-v1")

    def send(p: Planned) -> SendResult:
        ratelimit.acquire(connection.pk, connection.rate_limit)
        return client.identify(p.identifier, p.attributes)

    return list(_v1_pool.map(send, group))
