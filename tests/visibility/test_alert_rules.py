"""The alert rules as data in, problems out."""

from datetime import UTC, datetime, timedelta

from connections.services.visibility.alert_rules import ConnectionSnapshot, Thresholds, problems

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RULES = Thresholds(backing_off_after=timedelta(minutes=15), backlog_after=timedelta(minutes=30))


def snapshot(state: str = "active", since_minutes: float | None = None, waiting_minutes: float | None = None):
    return ConnectionSnapshot(
        state=state,
        state_since=NOW - timedelta(minutes=since_minutes) if since_minutes is not None else None,
        oldest_waiting=NOW - timedelta(minutes=waiting_minutes) if waiting_minutes is not None else None,
    )


def test_a_healthy_connection_has_no_problem():
    assert problems(snapshot(waiting_minutes=29.9), RULES, NOW) == {}


def test_a_faulted_connection_is_a_problem_at_once():
    assert set(problems(snapshot("faulted", since_minutes=0), RULES, NOW)) == {"faulted"}


def test_backing_off_becomes_a_problem_at_the_threshold():
    assert problems(snapshot("backing_off", since_minutes=14.9), RULES, NOW) == {}
    assert set(problems(snapshot("backing_off", since_minutes=15), RULES, NOW)) == {"backing_off"}


def test_backing_off_since_an_unknown_time_is_reported():
    assert "unknown time" in problems(snapshot("backing_off"), RULES, NOW)["backing_off"]


def test_an_old_backlog_is_a_problem_only_while_the_connection_is_active():
    assert set(problems(snapshot(waiting_minutes=30), RULES, NOW)) == {"backlog"}
    assert set(problems(snapshot("faulted", waiting_minutes=90), RULES, NOW)) == {"faulted"}
    assert problems(snapshot("backing_off", since_minutes=5, waiting_minutes=90), RULES, NOW) == {}


def test_long_waits_read_in_hours():
    assert "2 hours 5 minutes" in problems(snapshot(waiting_minutes=125), RULES, NOW)["backlog"]
