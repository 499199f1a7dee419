"""The circuit breaker's and the pause's rules at their exact edges (SPEC section 4), without HTTP.

`breaker.record` is given the results a Customer.io client returns, on a frozen clock, with the
probe jitter pinned to the top of its range and the worker wake-up recorded instead of sent, so
each rule is checked with exact values:

- an answer (2xx, 400, 207, 429) ends a run of failures; an open breaker closes, the backlog is
  due at once and a worker is woken;
- BREAKER_MAX_FAILURES transient failures (requests) in a row open it however quickly (a fast
  sender in an outage), and BREAKER_FAILURES spanning at least BREAKER_MIN_SECONDS (a slow one):
  only from `active`; a worker is woken for the first probe; random failures with answers
  between never open it;
- each failed probe doubles the wait (capped), and wakes a worker for the next one;
- 429 or Retry-After pauses the whole connection; a longer pause is never shortened.

tests/connection/breaker/test_outage_and_recovery.py runs the same rules over HTTP to the stand-in.
"""

import logging
import random
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.customerio.http import Outcome, SendResult
from connections.models import Connection, ConnectionStateChange, Forward
from connections.services.connection import breaker
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def answer(status=200, outcome=Outcome.SUCCEEDED, *, retry_after=None, error=""):
    return SendResult(outcome, status, "", retry_after, 10, error, 50)


def down(error="HTTP 503 from Customer.io.", status=503, retry_after=None):
    return SendResult(Outcome.RETRY, status, "", retry_after, 10, error, 50)


OK = answer()


@pytest.fixture
def rules(monkeypatch, settings):
    """Frozen clock, default breaker settings, jitter at the top of its range; returns the wake-ups sent."""
    settings.BREAKER_MAX_FAILURES, settings.BREAKER_FAILURES, settings.BREAKER_MIN_SECONDS = 20, 5, 10.0
    settings.BREAKER_PROBE_BASE, settings.BREAKER_PROBE_MAX = 5.0, 300.0
    monkeypatch.setattr(breaker.timezone, "now", lambda: NOW)
    monkeypatch.setattr(breaker.random, "uniform", lambda low, high: high)
    woken = []
    monkeypatch.setattr(
        breaker.wakeup, "forward_now", lambda connection_id, countdown=None: woken.append((connection_id, countdown))
    )
    return woken


def failing(failures, since_seconds, state=Connection.State.ACTIVE, **fields):
    return ConnectionFactory(
        consecutive_failures=failures,
        failing_since=NOW - timedelta(seconds=since_seconds) if failures else None,
        state=state,
        **fields,
    )


def fresh(connection):
    connection.refresh_from_db()
    return connection


# probe_interval


@pytest.mark.parametrize(("failed_probes", "ceiling"), [(0, 5.0), (1, 10.0), (3, 40.0), (5, 160.0), (6, 300.0)])
def test_the_probe_interval_doubles_up_to_the_cap_jittered_down_to_half(settings, monkeypatch, failed_probes, ceiling):
    settings.BREAKER_PROBE_BASE, settings.BREAKER_PROBE_MAX = 5.0, 300.0
    monkeypatch.setattr(breaker.random, "uniform", lambda low, high: (low, high))
    assert breaker.probe_interval(failed_probes) == (ceiling / 2, ceiling)


# opening


def test_the_fifth_failure_ten_seconds_into_the_run_opens_the_breaker(rules, caplog):
    caplog.set_level(logging.WARNING, logger="cioaudience.breaker")
    connection = failing(4, since_seconds=10)

    breaker.record(connection, [down("timed out")])

    assert connection.state == Connection.State.BACKING_OFF, "the caller's object follows: it stops sending"
    connection = fresh(connection)
    assert connection.state == Connection.State.BACKING_OFF
    assert (connection.consecutive_failures, connection.failed_probes) == (5, 0)
    assert connection.state_changed_at == NOW
    assert connection.next_probe_at == NOW + timedelta(seconds=5), "the first probe: BREAKER_PROBE_BASE"
    assert rules == [(connection.pk, 5.0)], "a worker is woken for the first probe"
    change = ConnectionStateChange.objects.get()
    assert (change.from_state, change.to_state) == ("active", "backing_off")
    assert change.reason == "5 transient failures in a row, the last: timed out"
    assert [r.getMessage() for r in caplog.records if "new=backing_off" in r.getMessage()]


@pytest.mark.parametrize(
    ("failures_before", "since_seconds"),
    [(3, 60), (4, 9)],
    ids=["four failures however long", "five failures in under ten seconds"],
)
def test_too_few_or_too_quick_failures_do_not_open_it(rules, failures_before, since_seconds):
    connection = failing(failures_before, since_seconds)
    breaker.record(connection, [down()])
    connection = fresh(connection)
    assert connection.state == Connection.State.ACTIVE and connection.next_probe_at is None
    assert connection.consecutive_failures == failures_before + 1
    assert rules == [] and not ConnectionStateChange.objects.exists()


def test_twenty_failures_in_a_row_open_it_within_a_fraction_of_a_second(rules, caplog):
    # A fast sender in an outage: 19 failed requests in the last 0.2 s, then the 20th.
    caplog.set_level(logging.WARNING, logger="cioaudience.breaker")
    connection = failing(19, since_seconds=0.2)

    breaker.record(connection, [down("HTTP 503 from Customer.io.")])

    assert connection.state == Connection.State.BACKING_OFF, "the caller's object follows: it stops sending"
    connection = fresh(connection)
    assert (connection.state, connection.consecutive_failures) == (Connection.State.BACKING_OFF, 20)
    assert connection.next_probe_at == NOW + timedelta(seconds=5), "the first probe: BREAKER_PROBE_BASE"
    assert rules == [(connection.pk, 5.0)], "a worker is woken for the first probe"
    change = ConnectionStateChange.objects.get()
    assert change.reason == "20 transient failures in a row, the last: HTTP 503 from Customer.io."


def test_each_failed_request_of_a_group_counts(rules):
    # A v1 worker reports its group of 8 requests at once: 8 failures, not 1.
    connection = failing(12, since_seconds=0.5)
    breaker.record(connection, [down()] * 7)
    connection = fresh(connection)
    assert (connection.state, connection.consecutive_failures) == (Connection.State.ACTIVE, 19)
    breaker.record(connection, [down()] * 8)
    assert fresh(connection).state == Connection.State.BACKING_OFF


def test_nineteen_failures_then_an_answer_start_the_count_again(rules):
    connection = failing(19, since_seconds=0.2)
    breaker.record(connection, [OK])
    for _ in range(19):
        breaker.record(connection, [down()])
    connection = fresh(connection)
    assert (connection.state, connection.consecutive_failures) == (Connection.State.ACTIVE, 19)
    assert rules == [] and not ConnectionStateChange.objects.exists()


def test_the_count_rule_follows_its_setting(rules, settings):
    settings.BREAKER_MAX_FAILURES = 50
    connection = failing(48, since_seconds=1)
    breaker.record(connection, [down()])
    assert fresh(connection).state == Connection.State.ACTIVE
    breaker.record(connection, [down()])
    assert fresh(connection).state == Connection.State.BACKING_OFF


def test_the_default_count_is_twenty(settings):
    assert settings.BREAKER_MAX_FAILURES == 20


def test_thirty_percent_random_failures_never_open_it(rules):
    # 6,000 requests (a minute at v1's default 100/s), each reported on its own (the worst case:
    # a v1 group of 8 with one answer in it ends the run), of which 30% fail at random, on the
    # frozen clock so that only the count rule could open the breaker. Seeded: the same run each
    # time. Over an hour at 100/s a run of 20 is expected 360,000 x 0.7 x 0.3^20 = 1e-5 times.
    rng = random.Random(26)
    outcomes = [rng.random() < 0.3 for _ in range(6000)]
    connection = failing(0, 0)
    highest = 0
    for failed in outcomes:
        breaker.record(connection, [down() if failed else OK])
        highest = max(highest, Connection.objects.values_list("consecutive_failures", flat=True).get(pk=connection.pk))
    connection = fresh(connection)
    assert connection.state == Connection.State.ACTIVE and not ConnectionStateChange.objects.exists()
    assert 7 <= highest < 20, "runs of failures well past the time rule's 5 (so the count was tested), short of 20"


def test_a_faulted_connection_is_not_moved_to_backing_off(rules):
    connection = failing(10, since_seconds=60, state=Connection.State.FAULTED)
    breaker.record(connection, [down()])
    assert fresh(connection).state == Connection.State.FAULTED and rules == []


def test_a_run_of_failures_starts_at_its_first_failure(rules):
    connection = failing(0, 0)
    breaker.record(connection, [down()])
    connection = fresh(connection)
    assert (connection.consecutive_failures, connection.failing_since) == (1, NOW)

    earlier = failing(2, since_seconds=7)
    breaker.record(earlier, [down(), down()])
    assert fresh(earlier).failing_since == NOW - timedelta(seconds=7), "a later failure does not move the start"


def test_a_group_of_failures_counts_once_and_an_answer_in_it_ends_the_run(rules):
    connection = failing(3, since_seconds=5)
    breaker.record(connection, [down(), answer(400, Outcome.FAILED, error="bad")])
    connection = fresh(connection)
    assert (connection.consecutive_failures, connection.failing_since) == (0, None)


@pytest.mark.parametrize(
    "result",
    [OK, answer(400, Outcome.FAILED, error="bad email"), answer(401, Outcome.CREDENTIALS_REJECTED, error="401")],
)
def test_any_answer_ends_the_run_of_failures(rules, result):
    connection = failing(4, since_seconds=9)
    breaker.record(connection, [result])
    connection = fresh(connection)
    assert (connection.consecutive_failures, connection.failing_since) == (0, None)
    assert connection.state == Connection.State.ACTIVE


def test_a_429_is_an_answer_it_pauses_but_never_counts_as_a_failure(rules):
    connection = failing(4, since_seconds=60)
    breaker.record(connection, [down("HTTP 429.", status=429)])
    connection = fresh(connection)
    assert connection.state == Connection.State.ACTIVE and connection.consecutive_failures == 0
    assert connection.paused_until == NOW + timedelta(seconds=1), "a 429 without Retry-After: one second"


@pytest.mark.parametrize("state", [Connection.State.ACTIVE, Connection.State.FAULTED])
def test_a_success_while_not_backing_off_is_one_write_of_the_connection(rules, state):
    """Every streamed request reports here: the last success and the end of the failures, one UPDATE."""
    connection = failing(4, since_seconds=9, state=state)
    with CaptureQueriesContext(db_connection) as queries:
        breaker.record(connection, [OK])
    assert [q["sql"].split()[0] for q in queries] == ["UPDATE"]
    connection = fresh(connection)
    assert (connection.state, connection.consecutive_failures, connection.failing_since) == (state, 0, None)
    assert connection.last_success_at == connection.credentials_verified_at == NOW
    assert rules == [] and not ConnectionStateChange.objects.exists()


# closing


def test_an_answer_closes_the_breaker_and_the_backlog_is_due_at_once(rules, caplog):
    caplog.set_level(logging.WARNING, logger="cioaudience.breaker")
    connection = failing(9, 60, state=Connection.State.BACKING_OFF, failed_probes=3, next_probe_at=NOW)
    waiting = Forward.objects.create(
        connection=connection, profile=ProfileFactory(), reason="membership", due_at=NOW + timedelta(minutes=4)
    )
    in_flight = Forward.objects.create(
        connection=connection,
        profile=ProfileFactory(),
        reason="membership",
        due_at=NOW + timedelta(minutes=4),
        claim_token="probe",
        claimed_until=NOW + timedelta(seconds=45),
    )
    other = Forward.objects.create(
        connection=ConnectionFactory(), profile=ProfileFactory(), reason="membership", due_at=NOW + timedelta(hours=1)
    )

    breaker.record(connection, [OK], probe=True)

    assert connection.state == Connection.State.ACTIVE, "the caller's object follows"
    connection = fresh(connection)
    assert (connection.state, connection.state_changed_at) == (Connection.State.ACTIVE, NOW)
    assert (connection.next_probe_at, connection.failed_probes, connection.consecutive_failures) == (None, 0, 0)
    waiting.refresh_from_db()
    in_flight.refresh_from_db()
    other.refresh_from_db()
    assert waiting.due_at == NOW
    assert in_flight.due_at == NOW + timedelta(minutes=4), "the probe's own rows are settled by its worker"
    assert other.due_at == NOW + timedelta(hours=1), "another connection's backlog is not touched"
    assert rules == [(connection.pk, None)], "a worker is woken at once"
    change = ConnectionStateChange.objects.get()
    assert (change.from_state, change.to_state, change.reason) == (
        "backing_off",
        "active",
        "Customer.io answered again",
    )


def test_an_answer_on_an_active_connection_wakes_nobody(rules):
    connection = failing(0, 0)
    breaker.record(connection, [OK])
    assert rules == [] and not ConnectionStateChange.objects.exists()


# probes


def test_a_failed_probe_doubles_the_wait_and_wakes_a_worker_for_the_next(rules, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.breaker")
    connection = failing(7, 60, state=Connection.State.BACKING_OFF, failed_probes=2, next_probe_at=NOW)

    breaker.record(connection, [down("timed out")], probe=True)

    connection = fresh(connection)
    assert connection.failed_probes == 3 and connection.consecutive_failures == 8
    assert connection.next_probe_at == NOW + timedelta(seconds=40), "5 s x 2^3"
    assert rules == [(connection.pk, 40.0)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("probe_failed")]
    assert lines == [f'probe_failed connection={connection.pk} next_probe_in=40.0 error="timed out"']


def test_a_probe_failing_after_the_breaker_closed_schedules_nothing(rules):
    connection = failing(1, 1, state=Connection.State.ACTIVE, failed_probes=0)
    breaker.record(connection, [down()], probe=True)
    connection = fresh(connection)
    assert connection.next_probe_at is None and connection.failed_probes == 0 and rules == []


def test_only_one_worker_takes_a_due_probe(rules):
    connection = failing(7, 60, state=Connection.State.BACKING_OFF, next_probe_at=NOW)
    assert breaker.take_probe_slot(connection) is True
    assert fresh(connection).next_probe_at == NOW + timedelta(seconds=60), "held a minute against a dead prober"
    assert breaker.take_probe_slot(connection) is False


def test_a_probe_not_yet_due_or_an_active_connection_gives_no_slot(rules):
    later = failing(7, 60, state=Connection.State.BACKING_OFF, next_probe_at=NOW + timedelta(seconds=1))
    active = failing(0, 0, next_probe_at=NOW)
    assert breaker.take_probe_slot(later) is False and breaker.take_probe_slot(active) is False


def test_probe_now_makes_the_probe_due_and_wakes_a_worker(rules):
    connection = failing(7, 60, state=Connection.State.BACKING_OFF, next_probe_at=NOW + timedelta(minutes=3))
    assert breaker.probe_now(connection) is True
    assert fresh(connection).next_probe_at == NOW
    assert rules == [(connection.pk, None)]


def test_probe_now_on_an_active_connection_does_nothing(rules):
    connection = failing(0, 0)
    assert breaker.probe_now(connection) is False
    assert rules == [] and fresh(connection).next_probe_at is None


def test_the_admin_shows_the_seconds_to_the_next_probe(rules):
    connection = ConnectionFactory(next_probe_at=NOW + timedelta(seconds=42))
    assert breaker.seconds_to_probe(connection) == 42.0
    connection.next_probe_at = NOW - timedelta(seconds=5)
    assert breaker.seconds_to_probe(connection) == 0.0
    connection.next_probe_at = None
    assert breaker.seconds_to_probe(connection) is None


# the pause, the last error, the last success


@pytest.mark.parametrize(
    ("results", "paused_for"),
    [
        ([down(status=503, retry_after=30.0)], 30.0),
        ([down("HTTP 429.", status=429, retry_after=0.5)], 1.0),
        ([down("HTTP 429.", status=429, retry_after=7.0)], 7.0),
        ([down(retry_after=3.0), down(retry_after=12.0), OK], 12.0),
    ],
    ids=["Retry-After on a 503", "a 429 pauses at least a second", "a 429's Retry-After", "the longest wins"],
)
def test_a_429_or_retry_after_pauses_the_whole_connection(rules, results, paused_for):
    connection = failing(0, 0)
    breaker.record(connection, results)
    assert fresh(connection).paused_until == NOW + timedelta(seconds=paused_for)


def test_no_429_and_no_retry_after_no_pause(rules):
    connection = failing(0, 0)
    breaker.record(connection, [down(), answer(retry_after=99.0)])
    assert fresh(connection).paused_until is None, "a Retry-After only counts on a transient failure"


def test_a_longer_pause_already_set_stays(rules):
    connection = ConnectionFactory(paused_until=NOW + timedelta(seconds=50))
    breaker.pause(connection, 5.0)
    assert fresh(connection).paused_until == NOW + timedelta(seconds=50)
    breaker.pause(connection, 80.0)
    assert fresh(connection).paused_until == NOW + timedelta(seconds=80)


def test_the_seconds_a_connection_stays_paused(rules):
    connection = ConnectionFactory(paused_until=NOW + timedelta(seconds=3))
    assert breaker.seconds_paused(connection) == 3.0
    assert breaker.seconds_paused(connection, NOW + timedelta(seconds=10)) == 0.0
    connection.paused_until = None
    assert breaker.seconds_paused(connection) == 0.0


def test_the_last_error_and_the_last_success_are_kept_for_the_admin(rules):
    connection = failing(0, 0)
    breaker.record(connection, [down("first"), answer(400, Outcome.FAILED, error="x" * 2500), down(error="")])
    connection = fresh(connection)
    assert connection.last_error == "x" * 2000 and connection.last_error_at == NOW
    assert connection.last_success_at is None

    breaker.record(connection, [OK])
    connection = fresh(connection)
    assert connection.last_success_at == NOW and connection.last_error == "x" * 2000


def test_no_results_change_nothing(rules):
    connection = failing(4, 60)
    breaker.record(connection, [])
    assert fresh(connection).consecutive_failures == 4


def test_one_connections_answer_leaves_the_others_failures_and_breaker_alone(rules):
    # Connections are independent: one workspace answering says nothing about another's outage.
    answering = failing(3, 5)
    failing_elsewhere = failing(4, 9)
    open_elsewhere = failing(9, 60, state=Connection.State.BACKING_OFF, next_probe_at=NOW + timedelta(minutes=1))

    breaker.record(answering, [OK])

    assert fresh(failing_elsewhere).consecutive_failures == 4
    assert fresh(open_elsewhere).state == Connection.State.BACKING_OFF


def test_closing_keeps_the_overdue_rows_in_their_order(rules):
    # Claims take the oldest due row first: closing the breaker moves only rows due later.
    connection = failing(9, 60, state=Connection.State.BACKING_OFF, next_probe_at=NOW)
    overdue = Forward.objects.create(
        connection=connection, profile=ProfileFactory(), reason="membership", due_at=NOW - timedelta(minutes=9)
    )
    breaker.record(connection, [OK], probe=True)
    overdue.refresh_from_db()
    assert overdue.due_at == NOW - timedelta(minutes=9)


def test_one_connections_failure_opens_no_other_connections_breaker(rules):
    # The other connection is one failure away from opening: only its own failure may open it.
    failing_here = failing(0, 0)
    on_the_edge = failing(5, 60)

    breaker.record(failing_here, [down()])

    assert fresh(on_the_edge).state == Connection.State.ACTIVE


def test_a_retry_after_under_a_second_on_a_503_pauses_just_that_long(rules):
    # Retry-After may be fractional (parse_retry_after takes "0.5", or an HTTP-date): only a 429
    # pauses at least a second.
    connection = failing(0, 0)
    breaker.record(connection, [down(status=503, retry_after=0.5)])
    assert fresh(connection).paused_until == NOW + timedelta(seconds=0.5)
