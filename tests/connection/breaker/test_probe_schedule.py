"""While a connection is backing off: when its next probe is, who may send it, and that
nothing done for one connection moves another's schedule (SPEC section 4)."""

import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.models import Connection
from connections.services.connection import breaker
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

TIMED_OUT = SendResult(Outcome.RETRY, None, "", None, 2000, "timed out after 2 s", 120)


@pytest.fixture
def probe_timing(settings):
    settings.BREAKER_PROBE_BASE = 10.0
    settings.BREAKER_PROBE_MAX = 1000.0


def backing_off(**fields):
    fields.setdefault("next_probe_at", timezone.now())
    return ConnectionFactory(state=Connection.State.BACKING_OFF, **fields)


def seconds_ahead(connection) -> float:
    connection.refresh_from_db()
    return (connection.next_probe_at - timezone.now()).total_seconds()


def test_each_failed_probe_doubles_the_wait_for_the_next_one(probe_timing):
    connection = backing_off(failed_probes=0)

    breaker.record(connection, [TIMED_OUT], probe=True)
    assert 10.0 - 1 <= seconds_ahead(connection) <= 20.0  # base x 2, jittered down to half
    assert connection.failed_probes == 1

    breaker.record(connection, [TIMED_OUT], probe=True)
    assert 20.0 - 1 <= seconds_ahead(connection) <= 40.0
    assert connection.failed_probes == 2


def test_a_failed_probe_is_logged_with_the_wait_and_the_error(probe_timing, caplog):
    connection = backing_off(failed_probes=0)

    with caplog.at_level(logging.INFO, logger="cioaudience.breaker"):
        breaker.record(connection, [TIMED_OUT], probe=True)

    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("probe_failed ")]
    found = re.fullmatch(rf'probe_failed connection={connection.pk} next_probe_in=(\d+\.\d) error="(.*)"', line)
    assert found, line
    assert 10.0 <= float(found[1]) <= 20.0
    assert found[2] == "timed out after 2 s"


def test_a_failed_probe_moves_no_other_connections_probe(probe_timing):
    connection = backing_off()
    other_due_at = timezone.now() + timedelta(seconds=5)
    other = backing_off(failed_probes=3, next_probe_at=other_due_at)

    breaker.record(connection, [TIMED_OUT], probe=True)

    other.refresh_from_db()
    assert (other.failed_probes, other.next_probe_at) == (3, other_due_at)


def test_a_probe_that_fails_after_the_breaker_closed_schedules_nothing(probe_timing):
    # Another worker's answer closed the breaker while this probe was in flight.
    connection = ConnectionFactory(state=Connection.State.ACTIVE, next_probe_at=None, failed_probes=0)

    breaker.record(connection, [TIMED_OUT], probe=True)

    connection.refresh_from_db()
    assert (connection.failed_probes, connection.next_probe_at) == (0, None)


def test_one_worker_takes_the_probe_and_holds_it_for_a_minute():
    connection = backing_off()

    assert breaker.take_probe_slot(connection) is True
    assert breaker.take_probe_slot(connection) is False
    assert 59.0 <= seconds_ahead(connection) <= 60.0


def test_taking_one_connections_probe_leaves_anothers_due():
    connection, other = backing_off(), backing_off()

    assert breaker.take_probe_slot(connection) is True
    assert breaker.take_probe_slot(other) is True


def test_probe_now_moves_only_that_connections_probe():
    later = timezone.now() + timedelta(minutes=5)
    connection, other = backing_off(next_probe_at=later), backing_off(next_probe_at=later)

    assert breaker.probe_now(connection) is True

    other.refresh_from_db()
    assert seconds_ahead(connection) <= 0 and other.next_probe_at == later


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(timedelta(seconds=30), 30.0), (timedelta(seconds=-30), 0.0), (None, None)],
    ids=["ahead", "overdue", "not-backing-off"],
)
def test_seconds_to_the_next_probe(offset, expected):
    connection = ConnectionFactory(next_probe_at=None if offset is None else timezone.now() + offset)

    seconds = breaker.seconds_to_probe(connection)

    assert seconds == expected if expected is None else expected - 1 <= seconds <= expected
