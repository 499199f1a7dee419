"""The circuit breaker of each connection, and the pause Customer.io can ask for (SPEC section 4).

    sending -> every request's result -> record(connection, results)
      an answer (2xx, 400, 207...): the run of failures ends; an open breaker closes, the
                                    backlog is made due at once and workers are woken
      a transient failure (5xx, timeout, connection error): counted, one per request; with no
                                    answer between, BREAKER_MAX_FAILURES in a row (however quick),
                                    or BREAKER_FAILURES spanning at least BREAKER_MIN_SECONDS,
                                    open the breaker: state "backing_off", workers stop claiming,
                                    one probe at a time at a growing, capped, jittered interval
      429 or Retry-After:           the whole connection pauses (`paused_until`), every worker

Why those rules: a share of random failures (say 30%) always leaves answers in between, so it
never opens the breaker and the per-row backoff handles it (a given 20 requests all fail with
probability 0.3^20, about 3.5e-11); an outage gives no answer at all, and from then on
sending the backlog only makes doomed requests. A fast sender (v1 at 100 requests/s) reaches
BREAKER_MAX_FAILURES (20) within a fraction of a second, before it has sent much of its
backlog; a slow one (v2 batches, a low rate limit) may never send 20 requests in an outage, so
BREAKER_FAILURES (5) spanning BREAKER_MIN_SECONDS (10 s) open it too, and needing that duration
keeps one burst of parallel failures (a v1 group of 8 timing out together) from opening it on
its own. A 429 is an answer ("slow down"): it pauses the connection but never opens the breaker.

Every transition is one conditional UPDATE, so it happens (and is logged) once, whichever
worker gets there first.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.logfmt import logfmt
from connections.models import Connection, Forward
from connections.services.connection import history as state_log
from connections.services.outbox import wakeup

log = logging.getLogger("cioaudience.breaker")

# A probe holds its slot this long, so a worker killed mid-probe does not stop probing for good.
PROBE_SLOT_SECONDS = 60.0
# A 429 without Retry-After: Customer.io's limits are per second.
RATE_LIMITED_PAUSE_SECONDS = 1.0


def probe_interval(failed_probes: int) -> float:
    """Seconds to the next probe: doubling from BREAKER_PROBE_BASE, at most BREAKER_PROBE_MAX, jittered."""
    ceiling = min(settings.BREAKER_PROBE_MAX, settings.BREAKER_PROBE_BASE * (2**failed_probes))
    return random.uniform(ceiling / 2, ceiling)


def record(connection: Connection, results: Sequence[SendResult], *, probe: bool = False) -> None:
    """What a group of requests tells about the connection (called for every request sent)."""
    if not results:
        return
    now = timezone.now()
    retry_after = max((r.retry_after or 0.0 for r in results if r.outcome is Outcome.RETRY), default=0.0)
    rate_limited = any(r.http_status == 429 for r in results)
    if rate_limited or retry_after:
        pause(connection, max(retry_after, RATE_LIMITED_PAUSE_SECONDS if rate_limited else 0.0), now=now)
    errors = [r.error for r in results if r.outcome is not Outcome.SUCCEEDED and r.error]
    if errors:
        Connection.objects.filter(pk=connection.pk).update(last_error=errors[-1][:2000], last_error_at=now)
    if any(r.outcome is not Outcome.RETRY or r.http_status == 429 for r in results):
        # A success is an answer too. Customer.io took it: the credentials work, whatever a check
        # at save could not tell.
        took_it = any(r.outcome is Outcome.SUCCEEDED for r in results)
        _answered(connection, now, {"last_success_at": now, "credentials_verified_at": now} if took_it else {})
    else:
        _failed(connection, now, len(results), errors[-1] if errors else "transient failure", probe=probe)


def _answered(connection: Connection, now: datetime, succeeded: dict[str, datetime]) -> None:
    """The run of failures ends (and `succeeded`: the last success is noted); an open breaker closes.

    A success while not backing off (nearly every request) is one UPDATE: the row is written for
    the last success anyway, and the failures reset in the same statement (a row without failures
    keeps its values). Otherwise (backing off, or another worker opened the breaker meanwhile; an
    answer that is no success) the statements one by one, each conditional as ever.
    """
    if succeeded and (
        Connection.objects.filter(pk=connection.pk)
        .exclude(state=Connection.State.BACKING_OFF)
        .update(
            consecutive_failures=0,
            failing_since=Case(
                When(consecutive_failures__gt=0, then=Value(None)),
                default=F("failing_since"),
                output_field=DateTimeField(),
            ),
            **succeeded,
        )
    ):
        return
    if succeeded:
        Connection.objects.filter(pk=connection.pk).update(**succeeded)
    Connection.objects.filter(pk=connection.pk, consecutive_failures__gt=0).update(
        consecutive_failures=0, failing_since=None
    )
    closed = Connection.objects.filter(pk=connection.pk, state=Connection.State.BACKING_OFF).update(
        state=Connection.State.ACTIVE, state_changed_at=now, next_probe_at=None, failed_probes=0
    )
    if closed:
        connection.state = Connection.State.ACTIVE
        # The backlog was held back by per-row backoff too: all of it is due now, at the full rate.
        Forward.objects.filter(connection_id=connection.pk, claim_token="", due_at__gt=now).update(due_at=now)
        _log_transition(connection, "backing_off", "active", "Customer.io answered again")
        wakeup.forward_now(connection.pk)


def _failed(connection: Connection, now: datetime, failures: int, error: str, *, probe: bool) -> None:
    Connection.objects.filter(pk=connection.pk).update(
        consecutive_failures=F("consecutive_failures") + failures,
        failing_since=Coalesce(F("failing_since"), Value(now)),
    )
    if probe:
        _schedule_next_probe(connection, now, error)
        return
    interval = probe_interval(0)
    many = Q(consecutive_failures__gte=settings.BREAKER_MAX_FAILURES)
    long = Q(
        consecutive_failures__gte=settings.BREAKER_FAILURES,
        failing_since__lte=now - timedelta(seconds=settings.BREAKER_MIN_SECONDS),
    )
    opened = Connection.objects.filter(many | long, pk=connection.pk, state=Connection.State.ACTIVE).update(
        state=Connection.State.BACKING_OFF,
        state_changed_at=now,
        failed_probes=0,
        next_probe_at=now + timedelta(seconds=interval),
    )
    if opened:
        connection.state = Connection.State.BACKING_OFF
        failures = Connection.objects.filter(pk=connection.pk).values_list("consecutive_failures", flat=True).first()
        _log_transition(
            connection, "active", "backing_off", f"{failures} transient failures in a row, the last: {error}"
        )
        wakeup.forward_now(connection.pk, countdown=interval)


def _schedule_next_probe(connection: Connection, now: datetime, error: str) -> None:
    failed = Connection.objects.filter(pk=connection.pk).values_list("failed_probes", flat=True).first() or 0
    interval = probe_interval(failed + 1)
    if Connection.objects.filter(pk=connection.pk, state=Connection.State.BACKING_OFF).update(
        failed_probes=F("failed_probes") + 1, next_probe_at=now + timedelta(seconds=interval)
    ):
        log.info(logfmt("probe_failed", connection=connection.pk, next_probe_in=round(interval, 1), error=error))
        wakeup.forward_now(connection.pk, countdown=interval)


def pause(connection: Connection, seconds: float, *, now: datetime | None = None) -> None:
    """Nobody sends for this connection for `seconds` (a pause already longer stays)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=seconds)
    Connection.objects.filter(pk=connection.pk).update(
        paused_until=Greatest(Coalesce(F("paused_until"), Value(until)), Value(until))
    )


def seconds_paused(connection: Connection, now: datetime | None = None) -> float:
    """How long this connection must still wait before sending (0 when it may send)."""
    if connection.paused_until is None:
        return 0.0
    return max(0.0, (connection.paused_until - (now or timezone.now())).total_seconds())


def take_probe_slot(connection: Connection) -> bool:
    """While backing off: whether this worker sends the probe now (one at a time, when due)."""
    now = timezone.now()
    return bool(
        Connection.objects.filter(pk=connection.pk, state=Connection.State.BACKING_OFF, next_probe_at__lte=now).update(
            next_probe_at=now + timedelta(seconds=PROBE_SLOT_SECONDS)
        )
    )


def seconds_to_probe(connection: Connection) -> float | None:
    if connection.next_probe_at is None:
        return None
    return max(0.0, (connection.next_probe_at - timezone.now()).total_seconds())


def probe_now(connection: Connection) -> bool:
    """The admin's "Probe now": the next probe is due at once. False when not backing off."""
    moved = Connection.objects.filter(pk=connection.pk, state=Connection.State.BACKING_OFF).update(
        next_probe_at=timezone.now()
    )
    if moved:
        wakeup.forward_now(connection.pk)
    return bool(moved)


def _log_transition(connection: Connection, old: str, new: str, reason: str) -> None:
    state_log.note_transition(connection.pk, old, new, reason)
