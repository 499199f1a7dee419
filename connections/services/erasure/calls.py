"""The worker path of erasure calls: tell Customer.io to suppress or delete an erased person.

    claim due ErasureCall rows (SKIP LOCKED + conditional UPDATE + token, with a lease)
      -> only while the connection is active and not paused (the breaker and Retry-After rule here too)
      -> log row written `pending` (action suppress/delete, no personal values)
      -> rate limiter -> client.suppress_person / delete_person
      -> log row completed; the call done (identifier blanked), retried with backoff, or left queued
      -> connection_state.note_results, like every sender

Transient failures (429, 5xx, timeouts) are retried with backoff for as long as they last, never
given up; a 400 fails the call for good; 401/403 leave it queued until the connection is resumed.
A call whose connection is deleted ends failed, identifier blanked (`end_orphaned`: on the delete,
and in the sweep).
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connections.customerio import ratelimit
from connections.customerio.client import Outcome, SendResult
from connections.logfmt import logfmt
from connections.models import Connection, Delivery, ErasureCall
from connections.models.delivery import RESPONSE_MAX_CHARS
from connections.scrubbing import scrub_text
from connections.services.connection import clients
from connections.services.connection import transitions as connection_state
from connections.services.erasure.local import scrub_deliveries
from connections.services.erasure.rules import ERASED, SUPPRESS, unsendable_identifier

log = logging.getLogger("cioaudience.erasure")

CLAIM_SIZE = 50
OPEN = (ErasureCall.Status.PENDING, ErasureCall.Status.RETRYING)
CONNECTION_DELETED = "The connection was deleted before the call was sent; Customer.io was not told."


def _unclaimed(now) -> Q:  # type: ignore[no-untyped-def]
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def due_calls(now=None) -> Q:  # type: ignore[no-untyped-def]
    """Open calls due now that no live claim holds (the sweep uses it too)."""
    now = now or timezone.now()
    return Q(status__in=OPEN, due_at__lte=now) & _unclaimed(now)


def sendable(connection: Connection, now=None) -> bool:  # type: ignore[no-untyped-def]
    now = now or timezone.now()
    return connection.state == Connection.State.ACTIVE and not (
        connection.paused_until is not None and connection.paused_until > now
    )


def claim(connection_id: int, limit: int = CLAIM_SIZE) -> tuple[str, list[ErasureCall]]:
    token = uuid.uuid4().hex
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            ErasureCall.objects.filter(due_calls(now), connection_id=connection_id)
            .order_by("due_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return token, []
        # Re-checked by the UPDATE itself: on SQLite (no row locks) this keeps two workers apart.
        ErasureCall.objects.filter(id__in=ids).filter(_unclaimed(now)).update(
            claim_token=token, claimed_until=now + timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)
        )
    return token, list(ErasureCall.objects.filter(claim_token=token).order_by("due_at", "pk"))


def release(token: str) -> None:
    ErasureCall.objects.filter(claim_token=token).update(claim_token="", claimed_until=None)


def send_due(connection_id: int) -> int:
    """Send this connection's due erasure calls; returns how many requests were made."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None or not sendable(connection):
        return 0
    token, calls = claim(connection_id)
    if not calls:
        return 0
    client = clients.track_client(connection)
    sent = 0
    try:
        for call in calls:
            delivery = _log_pending(connection, call)
            if problem := unsendable_identifier(call.identifier):
                _record(connection, call, delivery, _refused_here(problem))
                continue
            ratelimit.acquire(connection.pk, connection.rate_limit)
            if call.action == SUPPRESS:
                result = client.suppress_person(call.identifier)
            else:
                result = client.delete_person(call.identifier)
            sent += 1
            _record(connection, call, delivery, result)
            connection_state.note_results(connection, [result])
            if result.outcome is Outcome.CREDENTIALS_REJECTED or not sendable(_fresh(connection)):
                break  # faulted, or paused by a Retry-After: the rest wait, untouched
    finally:
        release(token)  # what was not sent (or done) goes back to the queue at once
    return sent


def end_orphaned(connection_ids: list[int] | None = None) -> int:
    """End the open calls of these connections (being deleted), or of none at all (deleted since).

    Nothing can send them any more; left open, they would keep the identifier forever. Each ends
    `failed`, saying why, with the identifier blanked, so its erasure shows it finished. Returns how many.
    """
    calls = ErasureCall.objects.filter(status__in=OPEN)
    if connection_ids is None:
        calls = calls.filter(connection__isnull=True)
    else:
        calls = calls.filter(connection_id__in=connection_ids)
    return calls.update(
        status=ErasureCall.Status.FAILED,
        identifier="",
        error=CONNECTION_DELETED,
        finished_at=timezone.now(),
        due_at=None,
        claim_token="",
        claimed_until=None,
    )


def _refused_here(problem: str) -> SendResult:
    """The result of a call checked against Customer.io's limits before sending: failed, nothing sent."""
    return SendResult(Outcome.FAILED, None, "", None, 0, problem, 0)


def _fresh(connection: Connection) -> Connection:
    connection.refresh_from_db(fields=["state", "paused_until"])
    return connection


def _log_pending(connection: Connection, call: ErasureCall) -> Delivery:
    # The log row never holds the identifier: it says which erasure, by the call's action and time.
    return Delivery.objects.create(
        connection=connection,
        profile=None,
        customer_id="",
        status=Delivery.Status.PENDING,
        reason="erasure",
        action=call.action,
        transport=Connection.Transport.V1,
        attempt=call.attempts + 1,
        request_id=uuid.uuid4(),
    )


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, capped; Customer.io's Retry-After wins when longer."""
    ceiling = min(settings.FORWARD_BACKOFF_MAX, settings.FORWARD_BACKOFF_BASE * (2 ** max(attempt - 1, 0)))
    return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)


def _record(connection: Connection, call: ErasureCall, delivery: Delivery, result: SendResult) -> None:
    now = timezone.now()
    identifier = call.identifier
    error = scrub_text(result.error, [identifier], ERASED)
    response = scrub_text(result.response_text, [identifier], ERASED)[:RESPONSE_MAX_CHARS]
    done = {"http_status": result.http_status, "finished_at": now, "claim_token": "", "claimed_until": None}
    with transaction.atomic():
        if result.outcome is Outcome.SUCCEEDED:
            # A forward that was in flight when the person was erased may have logged them again since.
            scrub_deliveries(Delivery.objects.filter(connection=connection, customer_id=identifier), [identifier])
            ErasureCall.objects.filter(pk=call.pk).update(
                status=ErasureCall.Status.SUCCEEDED, identifier="", error="", attempts=call.attempts + 1, **done
            )
            status, delivery_error = Delivery.Status.SUCCEEDED, ""
        elif result.outcome is Outcome.FAILED:
            # Refused for good: nothing will ever use the identifier again, so it is not kept.
            ErasureCall.objects.filter(pk=call.pk).update(
                status=ErasureCall.Status.FAILED, identifier="", error=error, attempts=call.attempts + 1, **done
            )
            status, delivery_error = Delivery.Status.FAILED, error
        elif result.outcome is Outcome.RETRY:
            retry_at = now + timedelta(seconds=backoff_seconds(call.attempts + 1, result.retry_after))
            ErasureCall.objects.filter(pk=call.pk).update(
                status=ErasureCall.Status.RETRYING,
                error=f"{error} Will retry.",
                attempts=call.attempts + 1,
                due_at=retry_at,
                http_status=result.http_status,
                claim_token="",
                claimed_until=None,
            )
            status, delivery_error = Delivery.Status.RETRYING, f"{error} Will retry."
        else:  # credentials rejected: the call waits, queued, until the connection is resumed
            ErasureCall.objects.filter(pk=call.pk).update(
                error=f"{error} Waits until the connection is resumed.",
                attempts=call.attempts + 1,
                http_status=result.http_status,
                claim_token="",
                claimed_until=None,
            )
            status, delivery_error = Delivery.Status.FAILED, f"{error} The call waits until the connection is resumed."
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            http_status=result.http_status,
            response=response,
            error=delivery_error,
            duration_ms=result.duration_ms,
            finished_at=now,
            retry_at=retry_at if result.outcome is Outcome.RETRY else None,
        )
    log.info(
        logfmt(
            "erasure_call",
            connection=connection.pk,
            erasure=call.record_id,
            action=call.action,
            status=status,
            http_status=result.http_status,
            attempt=call.attempts + 1,
        )
    )
