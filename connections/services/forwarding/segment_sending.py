"""Manual segments on the worker path (SPEC section 11): after a profile's identify succeeded.

    forwarding.send_claimed -> identify succeeded for some profiles
      -> send_segment_operations: per (segment, add or remove, identifier kind), the profiles'
         ids in requests of at most SEGMENT_MAX_IDS, each through the rate limiter, logged
         first as pending (action segment_add / segment_remove, the segment's id), completed after
      -> returns the profiles whose segment request must be retried: delivery_log.record_result puts
         their outbox rows back (identify and segment calls are idempotent, so the retry sends
         both again, computed from the database as always)

The identify goes first so that the person exists when the segment names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.utils import timezone

from connections.customerio import ratelimit
from connections.customerio.client import SEGMENT_MAX_IDS, CustomerIOClient, Outcome, SendResult
from connections.models import Connection, Delivery
from connections.models.delivery import RESPONSE_MAX_CHARS
from connections.services.connection import transitions as connection_state
from connections.services.forwarding.delivery_log import ForwardReport, log_outcome, log_pending
from connections.services.forwarding.payloads import Planned

STATUS_OF = {
    Outcome.SUCCEEDED: Delivery.Status.SUCCEEDED,
    Outcome.FAILED: Delivery.Status.FAILED,
    Outcome.RETRY: Delivery.Status.RETRYING,
    Outcome.CREDENTIALS_REJECTED: Delivery.Status.FAILED,
}


class SegmentLog(Protocol):
    """Where a segment request is logged: pending before the call, completed after it."""

    def pending(self, chunk: list[Planned], kind: str, segment_id: int) -> tuple[list[Planned], object]:
        """Log the request; returns the people still to send (an erased one is left out) and a handle."""
        ...

    def complete(self, handle: object, result: SendResult, chunk: list[Planned]) -> None: ...


class PerPersonLog:
    """The change path's log: one `Delivery` row per person in the request."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def pending(self, chunk: list[Planned], kind: str, segment_id: int) -> tuple[list[Planned], object]:
        logged = log_pending(self.connection, chunk, action=kind, segment_id=segment_id, one_request=True)
        return [p for p in chunk if p.profile_id in logged], list(logged.values())

    def complete(self, handle: object, result: SendResult, chunk: list[Planned]) -> None:
        assert isinstance(handle, list)
        status = STATUS_OF[result.outcome]
        error = result.error + (" Will retry." if status == Delivery.Status.RETRYING else "")
        Delivery.objects.filter(pk__in=handle).update(
            status=status,
            error=error,
            http_status=result.http_status,
            response=result.response_text[:RESPONSE_MAX_CHARS],
            duration_ms=result.duration_ms,
            finished_at=timezone.now(),
        )
        for p in chunk:
            log_outcome(self.connection, p.customer_id, status, result.http_status, result.error, p.attempt)


def send_segment_operations(
    connection: Connection,
    client: CustomerIOClient,
    identified: Iterable[Planned],
    report: ForwardReport,
    log: SegmentLog | None = None,
) -> set[int]:
    """Send the segment changes of profiles just identified; returns the profile ids to retry."""
    log = log or PerPersonLog(connection)
    groups: dict[tuple[int, str, str], list[Planned]] = {}
    for p in identified:
        assert p.identifier is not None  # only sendable profiles are identified
        for operation in p.segment_operations:
            groups.setdefault((operation.segment_id, operation.action, p.identifier.kind), []).append(p)
    retry: set[int] = set()
    for (segment_id, action, id_type), profiles in sorted(groups.items()):
        for start in range(0, len(profiles), SEGMENT_MAX_IDS):
            chunk = profiles[start : start + SEGMENT_MAX_IDS]
            ratelimit.acquire(connection.pk, connection.rate_limit)
            chunk, handle = log.pending(chunk, f"segment_{action}", segment_id)  # erased since: left out
            if not chunk:
                continue
            send = client.add_to_segment if action == "add" else client.remove_from_segment
            result = send(segment_id, [p.customer_id for p in chunk], id_type)
            log.complete(handle, result, chunk)
            connection_state.note_results(connection, [result])
            report.requests += 1
            if result.outcome in (Outcome.RETRY, Outcome.CREDENTIALS_REJECTED):
                retry.update(p.profile_id for p in chunk)
    return retry
