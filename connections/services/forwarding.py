"""The worker path: claim pending forwards, send them, record every outcome.

    claim (conditional UPDATE, SKIP LOCKED on PostgreSQL)
      -> plan (payloads from the database, coalesced per profile)
      -> log rows written as `pending`
      -> rate limiter -> Customer.io client
      -> log rows completed; outbox rows deleted, or released with a backoff

A profile is only claimed when no other live claim holds a row of it, so two workers
never send the same profile at once, and a later request can never overtake an earlier one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from connections.customerio import ratelimit
from connections.customerio.client import CustomerIOClient, Outcome, SendResult
from connections.customerio.limits import pack_v2_batches, v2_action
from connections.logfmt import logfmt
from connections.models import Connection, Delivery, Forward
from connections.models.delivery import RESPONSE_MAX_CHARS
from connections.services import connection_state
from connections.services.payloads import ClaimedRow, Planned, plan

log = logging.getLogger("cioaudience.forwarding")


@dataclass
class ForwardReport:
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    retrying: int = 0
    skipped: int = 0
    cancelled: int = 0
    requests: int = 0
    next_due_in: float | None = None  # seconds until the earliest row in backoff, if any
    faulted: bool = False

    def add(self, other: ForwardReport) -> None:
        for name in ("sent", "succeeded", "failed", "retrying", "skipped", "cancelled", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.faulted = self.faulted or other.faulted


def unclaimed(now) -> Q:  # type: ignore[no-untyped-def]
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def claim(connection_id: int, limit: int) -> tuple[str, list[ClaimedRow]]:
    """Claim the due rows of up to `limit` profiles, plus every other unclaimed row of them."""
    token = uuid.uuid4().hex
    now = timezone.now()
    # `claim_token <> ''` lets PostgreSQL answer from the small partial index of claimed rows.
    held_elsewhere = Forward.objects.filter(
        connection_id=connection_id, profile_id=OuterRef("profile_id"), claimed_until__gt=now
    ).exclude(claim_token="")
    with transaction.atomic():
        due = (
            Forward.objects.filter(connection_id=connection_id, due_at__lte=now)
            .filter(unclaimed(now))
            .exclude(Exists(held_elsewhere))
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("profile_id", flat=True)[:limit]
        )
        profile_ids = set(due)
        if not profile_ids:
            return token, []
        ids = list(
            Forward.objects.filter(connection_id=connection_id, profile_id__in=profile_ids)
            .filter(unclaimed(now))
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        # The condition is re-checked by the UPDATE itself: on databases without row
        # locks (SQLite) this is what keeps two workers from taking the same row.
        Forward.objects.filter(id__in=ids).filter(unclaimed(now)).update(
            claim_token=token, claimed_until=now + timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)
        )
    _give_up_contested(connection_id, token, now)
    rows = [
        ClaimedRow(*values)
        for values in Forward.objects.filter(claim_token=token).values_list(
            "id", "profile_id", "audience_id", "reason", "attempts"
        )
    ]
    return token, rows


def _give_up_contested(connection_id: int, token: str, now) -> None:  # type: ignore[no-untyped-def]
    """Release our rows of any profile that another live claim also holds.

    Two claims running at the same moment can each take a different row of one profile
    (each skips the row the other has locked). Checked after both committed, at least one
    of them sees the other and backs off, so a profile is never sent twice at once and a
    later request can never overtake an earlier one. The released rows are due at once.
    """
    ours = Forward.objects.filter(claim_token=token).values("profile_id")
    contested = (
        Forward.objects.filter(connection_id=connection_id, profile_id__in=ours, claimed_until__gt=now)
        .exclude(claim_token="")
        .exclude(claim_token=token)
        .values_list("profile_id", flat=True)
    )
    contested_ids = set(contested)
    if contested_ids:
        Forward.objects.filter(claim_token=token, profile_id__in=contested_ids).update(
            claim_token="", claimed_until=None
        )


def forward_pending(connection_id: int, *, time_budget: float | None = None) -> ForwardReport:
    """Send what is due for a connection until nothing is left (or the time budget is spent)."""
    started = time.monotonic()
    report = ForwardReport()
    while True:
        connection = Connection.objects.filter(pk=connection_id).first()
        if connection is None or connection.state != Connection.State.ACTIVE:
            report.faulted = connection is not None
            break
        size = settings.FORWARD_BATCH_SIZE
        if connection.transport == Connection.Transport.V1:
            # One request per profile, sent in turn: a smaller claim keeps each payload close
            # to the moment it is sent and leaves the rest to other threads and workers.
            size = min(size, settings.FORWARD_V1_CLAIM_SIZE)
        token, rows = claim(connection_id, size)
        if not rows:
            break
        try:
            report.add(send_claimed(connection, token, rows))
        except BaseException:
            # Give the rows back at once rather than when the lease runs out.
            release_claim(token)
            raise
        if report.faulted or (time_budget is not None and time.monotonic() - started > time_budget):
            break
    report.next_due_in = seconds_until_next_due(connection_id)
    return report


def seconds_until_next_due(connection_id: int) -> float | None:
    now = timezone.now()
    due = (
        Forward.objects.filter(connection_id=connection_id)
        .filter(unclaimed(now))
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    return None if due is None else max(0.0, (due - now).total_seconds())


def send_claimed(connection: Connection, token: str, rows: list[ClaimedRow]) -> ForwardReport:
    report = ForwardReport()
    planned = plan(connection, rows)
    _record_unsent(connection, token, planned, report)
    sendable = [p for p in planned if p.sendable]
    if not sendable:
        return report
    client = CustomerIOClient(
        connection.site_id,
        connection.api_key,
        connection.region,
        timeout=settings.CUSTOMERIO_TIMEOUT,
    )
    v1 = connection.transport == Connection.Transport.V1
    if v1:
        # One request per profile: a few are in flight at once (each waits for the rate limiter).
        size = settings.FORWARD_V1_CONCURRENCY
        groups = [sendable[i : i + size] for i in range(0, len(sendable), size)]
    else:
        actions = [v2_action(p.customer_id, p.attributes) for p in sendable]
        groups = [[sendable[i] for i in group] for group in pack_v2_batches(actions)]

    for position, group in enumerate(groups):
        if not v1:
            ratelimit.acquire(connection.pk, connection.rate_limit)
        group = _renew_claim(token, group)
        if not group:
            continue
        logged = _log_pending(connection, group)
        if v1:
            results = _send_v1(client, connection, group)
            with transaction.atomic():
                for p, result in zip(group, results, strict=True):
                    _record_result(connection, token, logged, result, [(p, result.outcome, result.error)], report)
        else:
            batch = client.batch_identify([(p.customer_id, p.attributes) for p in group])
            results = [batch.overall]
            outcomes = [(p, item.outcome, item.error) for p, item in zip(group, batch.items, strict=True)]
            _record_result(connection, token, logged, batch.overall, outcomes, report)
        report.requests += len(results)
        report.sent += len(group)
        connection_state.note_results(connection, results)
        if any(r.outcome is Outcome.CREDENTIALS_REJECTED for r in results):
            # Everything not yet sent waits for the credentials to be fixed, untouched.
            rest = [p for later in groups[position + 1 :] for p in later]
            _release(token, [i for p in rest for i in p.row_ids])
            report.faulted = True
            break
    return report


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
        return client.identify(p.customer_id, p.attributes)

    return list(_v1_pool.map(send, group))


def _renew_claim(token: str, group: list[Planned]) -> list[Planned]:
    """Extend the lease of the rows about to be sent; drop profiles whose rows are no longer ours.

    A claim whose lease ran out (a very slow send) may have been taken over by another
    worker, which then sends newer state: this worker must not send its older plan after it.
    """
    row_ids = [i for p in group for i in p.row_ids]
    until = timezone.now() + timedelta(seconds=settings.FORWARD_CLAIM_SECONDS)
    if Forward.objects.filter(claim_token=token, id__in=row_ids).update(claimed_until=until) == len(row_ids):
        return group
    ours = set(Forward.objects.filter(claim_token=token, id__in=row_ids).values_list("id", flat=True))
    return [p for p in group if set(p.row_ids) <= ours]


def _log_pending(connection: Connection, group: list[Planned]) -> dict[int, int]:
    """Write the log rows of the group's request(s) as pending; returns profile id -> delivery id.

    A v2 batch is one request (one request id for all); v1 sends one request per profile.
    """
    shared = uuid.uuid4() if connection.transport == Connection.Transport.V2_BATCH else None
    rows = Delivery.objects.bulk_create(
        [
            Delivery(
                connection=connection,
                profile_id=p.profile_id,
                customer_id=p.customer_id,
                status=Delivery.Status.PENDING,
                reason=p.reason,
                transport=connection.transport,
                attributes=p.attributes,
                attempt=p.attempt,
                request_id=shared or uuid.uuid4(),
            )
            for p in group
        ]
    )
    return {row.profile_id: row.pk for row in rows}


def _record_unsent(connection: Connection, token: str, planned: list[Planned], report: ForwardReport) -> None:
    """Profiles that are skipped, cancelled or break a Customer.io limit: logged, rows removed."""
    now = timezone.now()
    unsent = [p for p in planned if not p.sendable]
    if not unsent:
        return
    entries = []
    for p in unsent:
        if p.skip:
            status, why = Delivery.Status.SKIPPED, p.skip
            report.skipped += 1
        elif p.cancel:
            status, why = Delivery.Status.CANCELLED, p.cancel
            report.cancelled += 1
        else:
            status, why = Delivery.Status.FAILED, p.violation
            report.failed += 1
        entries.append(
            Delivery(
                connection=connection,
                profile_id=p.profile_id,
                customer_id=p.customer_id,
                status=status,
                reason=p.reason,
                transport=connection.transport,
                attributes=p.attributes,
                error=why,
                attempt=p.attempt,
                finished_at=now,
            )
        )
        log_outcome(connection, p.customer_id, status, None, why, p.attempt)
    Delivery.objects.bulk_create(entries)
    Forward.objects.filter(claim_token=token, id__in=[i for p in unsent for i in p.row_ids]).delete()


def _record_result(
    connection: Connection,
    token: str,
    logged: dict[int, int],
    result: SendResult,
    outcomes: list[tuple[Planned, Outcome, str]],
    report: ForwardReport,
) -> None:
    now = timezone.now()
    common = {
        "http_status": result.http_status,
        "response": result.response_text[:RESPONSE_MAX_CHARS],
        "duration_ms": result.duration_ms,
        "finished_at": now,
    }
    done_rows: list[int] = []
    with transaction.atomic():
        for outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RETRY, Outcome.CREDENTIALS_REJECTED):
            group = [(p, error) for p, o, error in outcomes if o is outcome]
            if not group:
                continue
            if outcome is Outcome.SUCCEEDED:
                _complete(logged, group, Delivery.Status.SUCCEEDED, common)
                done_rows += [i for p, _ in group for i in p.row_ids]
                report.succeeded += len(group)
            elif outcome is Outcome.FAILED:
                _complete(logged, group, Delivery.Status.FAILED, common)
                done_rows += [i for p, _ in group for i in p.row_ids]
                report.failed += len(group)
            elif outcome is Outcome.RETRY:
                _retry_or_give_up(token, logged, group, result, common, report, done_rows)
            else:
                _complete(
                    logged,
                    [(p, f"{e} The connection is faulted; this update waits until it is resumed.") for p, e in group],
                    Delivery.Status.FAILED,
                    common,
                )
                _release(token, [i for p, _ in group for i in p.row_ids])
                connection_state.fault(connection, result.error or "Customer.io rejected the credentials.")
                report.failed += len(group)
            for p, error in group:
                gave_up = outcome is Outcome.RETRY and p.attempt >= settings.FORWARD_MAX_ATTEMPTS
                status = "failed" if gave_up else outcome.value
                log_outcome(connection, p.customer_id, status, result.http_status, error, p.attempt)
        Forward.objects.filter(claim_token=token, id__in=done_rows).delete()


def _complete(logged: dict[int, int], group: list[tuple[Planned, str]], status: str, common: dict) -> None:
    by_error: dict[str, list[int]] = {}
    for p, error in group:
        by_error.setdefault(error, []).append(p.profile_id)
    for error, profile_ids in by_error.items():
        Delivery.objects.filter(pk__in=[logged[p] for p in profile_ids]).update(
            status=status, error=error, **common
        )


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; Customer.io's Retry-After wins when it asks for longer."""
    ceiling = min(settings.FORWARD_BACKOFF_MAX, settings.FORWARD_BACKOFF_BASE * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def _retry_or_give_up(
    token: str,
    logged: dict[int, int],
    group: list[tuple[Planned, str]],
    result: SendResult,
    common: dict,
    report: ForwardReport,
    done_rows: list[int],
) -> None:
    now = timezone.now()
    # Profiles of one request share its error and, per attempt number, one backoff: a few
    # queries per request rather than a few per profile.
    by_attempt: dict[tuple[int, str], list[Planned]] = {}
    for p, error in group:
        by_attempt.setdefault((p.attempt, error), []).append(p)
    for (attempt, error), profiles in by_attempt.items():
        if attempt >= settings.FORWARD_MAX_ATTEMPTS:
            message = f"{error} Gave up after {attempt} attempts; retry it from the forwarding log."
            _complete(logged, [(p, message) for p in profiles], Delivery.Status.FAILED, common)
            done_rows += [i for p in profiles for i in p.row_ids]
            report.failed += len(profiles)
            continue
        retry_at = now + timedelta(seconds=backoff_seconds(attempt, result.retry_after))
        Delivery.objects.filter(pk__in=[logged[p.profile_id] for p in profiles]).update(
            status=Delivery.Status.FAILED, error=f"{error} Will retry.", retry_at=retry_at, **common
        )
        Forward.objects.filter(claim_token=token, id__in=[i for p in profiles for i in p.row_ids]).update(
            attempts=attempt, due_at=retry_at, claim_token="", claimed_until=None
        )
        report.retrying += len(profiles)


def _release(token: str, row_ids: list[int]) -> None:
    """Give rows back to the outbox untouched (for a faulted connection)."""
    if row_ids:
        Forward.objects.filter(claim_token=token, id__in=row_ids).update(claim_token="", claimed_until=None)


def release_claim(token: str) -> None:
    Forward.objects.filter(claim_token=token).update(claim_token="", claimed_until=None)


def log_outcome(
    connection: Connection, customer_id: str, status: str, http_status: int | None, error: str, attempt: int
) -> None:
    """One `key=value` line per delivery outcome (logfmt).

    Only ids, the outcome and the error, which the client has scrubbed of credentials;
    values are quoted and escaped, so a customer_id or a message holding spaces, quotes or
    newlines can neither break the line nor forge another one.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        logfmt(
            "delivery",
            connection=connection.pk,
            customer_id=customer_id,
            status=status,
            http_status=http_status,
            attempt=attempt,
            error=error or None,
        )
    )
