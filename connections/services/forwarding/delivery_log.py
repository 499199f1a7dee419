"""Recording what became of each claimed profile: the forwarding log and the outbox.

    ... -> Customer.io client -> results
      -> log rows completed: succeeded / failed (400, a 207 item error, a limit) / retrying
      -> outbox rows deleted (settled) or put back with a backoff (transient: never given up)

Only permanent outcomes fail a delivery. A transient one (429, 5xx, timeout, dropped
connection) is logged as `retrying` and its rows wait, however long Customer.io stays down:
the circuit breaker (connection/breaker.py) keeps that wait from turning into a flood of requests.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.logfmt import logfmt
from connections.models import Connection, Delivery, Profile
from connections.models.delivery import RESPONSE_MAX_CHARS
from connections.services.forwarding import claims
from connections.services.forwarding.payloads import Planned
from connections.services.outbox import bulk

log = logging.getLogger("cioaudience.forwarding")

# The columns of a pending log row that differ from row to row (bulk.rows_cte's names and casts).
LOG_COLUMNS = [
    ("profile_id", "bigint"),
    ("customer_id", "text"),
    ("reason", "text"),
    ("attributes", "jsonb"),
    ("attempt", "integer"),
    ("request_id", "uuid"),
]
FAULTED_SUFFIX = " The connection is faulted; this update waits until it is resumed."


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
    backing_off: bool = False  # the breaker is open: only probes are sent
    paused_for: float = 0.0  # Customer.io asked every sender to wait this long
    held: bool = False  # changes keep arriving: sending waits for a pause (forwarding/flood_hold.py)
    come_back_at: datetime | None = None  # held, and this caller is the one that sends after the hold

    def add(self, other: ForwardReport) -> None:
        for name in ("sent", "succeeded", "failed", "retrying", "skipped", "cancelled", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.faulted = self.faulted or other.faulted
        self.backing_off = self.backing_off or other.backing_off
        self.paused_for = max(self.paused_for, other.paused_for)

    @property
    def stopped(self) -> bool:
        """Nothing more may be sent for the connection now."""
        return self.faulted or self.backing_off or self.paused_for > 0


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, capped; Customer.io's Retry-After wins when it asks for longer."""
    ceiling = min(settings.FORWARD_BACKOFF_MAX, settings.FORWARD_BACKOFF_BASE * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def log_pending(
    connection: Connection,
    group: list[Planned],
    *,
    action: str = "identify",
    segment_id: int | None = None,
    one_request: bool | None = None,
) -> dict[int, int]:
    """Write the log rows of the group's request(s) as pending; returns profile id -> delivery id.

    Written before the HTTP call, so a crash in the middle still leaves a trace. A v2 batch or a
    segment request is one request (one request id for all); v1 sends one request per profile.

    Only profiles that still exist get a row (and are in the answer): one erased since the plan
    is left out, and the caller must not send it. Their rows lock the profiles (FOR KEY SHARE)
    until written, so an erasure, which locks the person first, either comes before (the person is
    left out) or waits and then scrubs these rows; erasure/local.py builds its fence on this.
    """
    if one_request is None:
        one_request = connection.transport == Connection.Transport.V2_BATCH
    shared = uuid.uuid4() if one_request else None
    db = bulk.database(Delivery)
    fields = {name: Delivery._meta.get_field(name) for name in ("attributes", "request_id")}

    def prepared(name: str, value: object) -> object:
        # In the rows' JSON on PostgreSQL (cast there); as Django stores them elsewhere (SQLite).
        if bulk.is_postgresql(db):
            return str(value) if name == "request_id" else value
        return fields[name].get_db_prep_save(value, db)

    rows = [
        (
            p.profile_id,
            p.customer_id,
            p.reason,
            prepared("attributes", p.attributes if action == "identify" else {}),
            p.attempt,
            prepared("request_id", shared or uuid.uuid4()),
        )
        for p in group
    ]
    # One statement (rows as one JSON parameter): bulk_create built a model object and prepared
    # each field of each of up to FORWARD_BATCH_SIZE rows in Python, the largest part of a
    # forwarded profile's cost under cProfile (0.5 ms a profile).
    lock = " FOR KEY SHARE" if bulk.is_postgresql(db) else ""  # SQLite: one writer at a time anyway
    returned = bulk.run(
        db,
        LOG_COLUMNS,
        rows,
        f", present AS (SELECT id FROM {Profile._meta.db_table} WHERE id IN (SELECT profile_id FROM v){lock})"  # noqa: S608
        f" INSERT INTO {Delivery._meta.db_table} (connection_id, profile_id, customer_id, status, reason,"
        " transport, action, segment_id, attributes, attempt, request_id, response, error, created_at)"
        " SELECT %s, profile_id, customer_id, %s, reason, %s, %s, %s, attributes, attempt, request_id, '', '', %s"
        " FROM v WHERE profile_id IN (SELECT id FROM present) RETURNING profile_id, id",
        [
            connection.pk,
            Delivery.Status.PENDING.value,
            connection.transport,
            action,
            segment_id,
            bulk.timestamp(db, timezone.now()),
        ],
    )
    return dict(returned)


def record_unsent(connection: Connection, token: str, planned: list[Planned], report: ForwardReport) -> None:
    """Profiles that are skipped, cancelled or break a Customer.io limit: logged, rows removed."""
    unsent = log_unsent(connection, planned, report)
    if unsent:
        claims.delete(token, [i for p in unsent for i in p.row_ids])


def log_unsent(connection: Connection, planned: list[Planned], report: ForwardReport) -> list[Planned]:
    """Log the profiles that are skipped, cancelled or break a Customer.io limit; returns them."""
    now = timezone.now()
    unsent = [p for p in planned if not p.sendable]
    if not unsent:
        return unsent
    entries = []
    with transaction.atomic():
        present = lock_present([p.profile_id for p in unsent if not p.gone])
        for p in unsent:
            gone = p.gone or p.profile_id not in present  # erased since the plan: logged naming nobody
            entries.append(_unsent_entry(connection, p, gone, now, report))
        Delivery.objects.bulk_create(entries)
    return unsent


def lock_present(profile_ids: list[int]) -> set[int]:
    """Those of the profiles that exist, locked until the transaction ends (see log_pending)."""
    if not profile_ids:
        return set()
    db = bulk.database(Delivery)
    where, args = bulk.in_values(db, "id", profile_ids)
    lock = " FOR KEY SHARE" if bulk.is_postgresql(db) else ""
    # The bounds: one primary-key range for a streamed page's contiguous ids (as payloads.plan).
    bounds = [min(profile_ids), max(profile_ids)]
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Profile._meta.db_table} WHERE {where} AND id BETWEEN %s AND %s{lock}",  # noqa: S608
            [*args, *bounds],
        )
        return {pk for (pk,) in cursor.fetchall()}


def _unsent_entry(connection: Connection, p: Planned, gone: bool, now: datetime, report: ForwardReport) -> Delivery:
    if p.skip:
        status, why = Delivery.Status.SKIPPED, p.skip
        report.skipped += 1
    elif p.cancel:
        status, why = Delivery.Status.CANCELLED, p.cancel
        report.cancelled += 1
    else:
        status, why = Delivery.Status.FAILED, p.violation
        report.failed += 1
    customer_id = "" if gone else p.customer_id
    log_outcome(connection, customer_id, status, None, why, p.attempt)
    return Delivery(
        connection=connection,
        profile_id=None if gone else p.profile_id,
        customer_id=customer_id,
        status=status,
        reason=p.reason,
        transport=connection.transport,
        attributes={} if gone else p.attributes,
        error=why,
        attempt=p.attempt,
        finished_at=now,
    )


def record_result(
    connection: Connection,
    token: str,
    logged: dict[int, int],
    result: SendResult,
    outcomes: list[tuple[Planned, Outcome, str]],
    report: ForwardReport,
    again: Set[int] = frozenset(),
) -> None:
    """Complete the log rows of one request and settle or put back its outbox rows.

    `again`: profiles identified here whose manual-segment request must be retried; their rows
    go back with a backoff as for a transient failure.
    """
    now = timezone.now()
    common = {
        "http_status": result.http_status,
        "response": result.response_text[:RESPONSE_MAX_CHARS],
        "duration_ms": result.duration_ms,
        "finished_at": now,
    }
    settled: list[int] = []
    with transaction.atomic():
        for p, outcome, error in outcomes:
            status = Delivery.Status.RETRYING if outcome is Outcome.RETRY else outcome.value
            log_outcome(connection, p.customer_id, status, result.http_status, error, p.attempt)
        for outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            group = [(p, error) for p, o, error in outcomes if o is outcome]
            _complete(logged, group, outcome.value, common)
            settled += [i for p, _ in group if p.profile_id not in again for i in p.row_ids]
            setattr(report, outcome.value, getattr(report, outcome.value) + len(group))
        retried = [p for p, o, _ in outcomes if o is Outcome.SUCCEEDED and p.profile_id in again]
        for attempt in sorted({p.attempt for p in retried}):
            rows = [i for p in retried if p.attempt == attempt for i in p.row_ids]
            due = timezone.now() + timedelta(seconds=backoff_seconds(attempt, None))
            claims.requeue(token, rows, due_at=due, attempts=attempt)
        rejected = [(p, error + FAULTED_SUFFIX) for p, o, error in outcomes if o is Outcome.CREDENTIALS_REJECTED]
        if rejected:
            # The attempt failed; the update itself waits, untouched, for the connection's resume.
            _complete(logged, rejected, Delivery.Status.FAILED, common)
            claims.requeue(token, [i for p, _ in rejected for i in p.row_ids])
            report.failed += len(rejected)
        _retry_later(token, logged, [(p, e) for p, o, e in outcomes if o is Outcome.RETRY], result, common, report)
        claims.delete(token, settled)


def _complete(logged: dict[int, int], group: list[tuple[Planned, str]], status: str, common: dict) -> None:
    by_error: dict[str, list[int]] = {}
    for p, error in group:
        by_error.setdefault(error, []).append(p.profile_id)
    for error, profile_ids in by_error.items():
        Delivery.objects.filter(pk__any=[logged[p] for p in profile_ids]).update(status=status, error=error, **common)


def _retry_later(
    token: str,
    logged: dict[int, int],
    group: list[tuple[Planned, str]],
    result: SendResult,
    common: dict,
    report: ForwardReport,
) -> None:
    """A transient failure: the attempt is logged `retrying` and the rows come back after a backoff."""
    now = timezone.now()
    # Profiles of one request share its error and, per attempt number, one backoff: a few
    # queries per request rather than a few per profile.
    by_attempt: dict[tuple[int, str], list[Planned]] = {}
    for p, error in group:
        by_attempt.setdefault((p.attempt, error), []).append(p)
    for (attempt, error), profiles in by_attempt.items():
        retry_at = now + timedelta(seconds=backoff_seconds(attempt, result.retry_after))
        Delivery.objects.filter(pk__any=[logged[p.profile_id] for p in profiles]).update(
            status=Delivery.Status.RETRYING, error=f"{error} Will retry.", retry_at=retry_at, **common
        )
        claims.requeue(token, [i for p in profiles for i in p.row_ids], due_at=retry_at, attempts=attempt)
        report.retrying += len(profiles)


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
