"""What becomes of a claimed profile once its request is answered (SPEC section 4), without HTTP.

The outcome functions are called directly with the results a Customer.io client returns, on a
frozen clock and with the jitter pinned to either end of its range, so the log rows, the outbox
rows and the report can be compared with exact values:

- succeeded / 400-failed: the log row is completed, the outbox rows are deleted;
- transient (429, 5xx, timeout): logged `retrying` with the retry time, the rows come back after
  an exponential backoff with jitter (never given up), `Retry-After` winning when longer;
- 401/403: the attempt is failed, the update itself waits untouched for the resume;
- skipped, cancelled, a Customer.io limit: logged at once, rows removed.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.customerio.http import Outcome, SendResult
from connections.models import Connection, Delivery, Forward
from connections.services.forwarding import delivery_log as outcomes
from connections.services.forwarding.delivery_log import FAULTED_SUFFIX, ForwardReport, backoff_seconds
from connections.services.forwarding.payloads import Planned
from tests.support.factories import AudienceFactory, ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(outcomes.timezone, "now", lambda: NOW)


@pytest.fixture
def jitter(monkeypatch, settings):
    """Backoff base 2 s, cap 300 s; the jitter returns the top (or, set to "low", the bottom) of its range."""
    settings.FORWARD_BACKOFF_BASE = 2.0
    settings.FORWARD_BACKOFF_MAX = 300.0
    end = {"which": "high"}
    monkeypatch.setattr(outcomes.random, "uniform", lambda low, high: high if end["which"] == "high" else low)
    return end


def result(outcome=Outcome.SUCCEEDED, status=200, *, retry_after=None, text="ok", error=""):
    return SendResult(outcome, status, text, retry_after, 12, error, 100)


def claimed(connection, holder="t", *, attempts=0, audiences=1, **profile_fields):
    """A profile with `audiences` outbox rows held by the claim `holder`, and its plan."""
    profile = ProfileFactory(**profile_fields)
    rows = [
        Forward.objects.create(
            connection=connection,
            profile=profile,
            audience=AudienceFactory() if i else None,
            reason="membership" if i == 0 else "identity",
            due_at=NOW,
            attempts=attempts,
            claim_token=holder,
            claimed_until=NOW + timedelta(seconds=45),
        )
        for i in range(audiences)
    ]
    return Planned(
        profile_id=profile.pk,
        customer_id=profile.customer_id,
        reason="membership",
        attempt=attempts + 1,
        row_ids=[r.pk for r in rows],
        attributes={"SegmentMembership": "'1'"},
    )


@pytest.fixture
def connection():
    return ConnectionFactory(transport=Connection.Transport.V2_BATCH)


# backoff_seconds


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (30, 300.0)])
def test_the_backoff_doubles_per_attempt_up_to_the_cap_and_jitters_down_to_half(jitter, attempt, ceiling):
    assert backoff_seconds(attempt, None) == ceiling
    jitter["which"] = "low"
    assert backoff_seconds(attempt, None) == ceiling / 2


def test_the_backoff_is_random_within_its_range(settings):
    settings.FORWARD_BACKOFF_BASE, settings.FORWARD_BACKOFF_MAX = 2.0, 300.0
    delays = {backoff_seconds(3, None) for _ in range(50)}
    assert all(4.0 <= d <= 8.0 for d in delays) and len(delays) > 40


def test_retry_after_wins_when_it_asks_for_longer_and_only_then(jitter):
    assert backoff_seconds(1, 30.0) == 30.0
    assert backoff_seconds(3, 5.0) == 8.0
    assert backoff_seconds(3, 0.0) == 8.0


# ForwardReport


def test_reports_add_up_and_any_stop_stops_the_sum():
    total = ForwardReport(sent=1, succeeded=1, requests=1, paused_for=2.0)
    total.add(ForwardReport(sent=2, failed=1, retrying=1, skipped=1, cancelled=1, requests=2, paused_for=1.0))
    assert (total.sent, total.succeeded, total.failed, total.retrying) == (3, 1, 1, 1)
    assert (total.skipped, total.cancelled, total.requests, total.paused_for) == (1, 1, 3, 2.0)
    assert not total.faulted and not total.backing_off
    total.add(ForwardReport(faulted=True))
    total.add(ForwardReport(backing_off=True))
    total.add(ForwardReport())
    assert total.faulted and total.backing_off


@pytest.mark.parametrize(
    ("report", "stopped"),
    [
        (ForwardReport(), False),
        (ForwardReport(faulted=True), True),
        (ForwardReport(backing_off=True), True),
        (ForwardReport(paused_for=0.5), True),
    ],
)
def test_a_report_says_stopped_when_nothing_more_may_be_sent(report, stopped):
    assert report.stopped is stopped


# log_pending


def test_a_v2_batch_is_one_request_id_for_all_its_profiles_logged_pending(frozen, connection):
    group = [claimed(connection), claimed(connection, attempts=2)]

    logged = outcomes.log_pending(connection, group)

    rows = Delivery.objects.order_by("pk")
    assert logged == {row.profile_id: row.pk for row in rows}
    assert len({row.request_id for row in rows}) == 1
    first, second = rows
    assert (first.status, first.reason, first.transport, first.action) == (
        "pending",
        "membership",
        "v2_batch",
        "identify",
    )
    assert first.attributes == {"SegmentMembership": "'1'"} and first.customer_id == group[0].customer_id
    assert (first.attempt, second.attempt, first.segment_id) == (1, 3, None)


def test_v1_logs_one_request_id_per_profile(connection):
    connection.transport = Connection.Transport.V1
    outcomes.log_pending(connection, [claimed(connection), claimed(connection)])
    assert Delivery.objects.values("request_id").distinct().count() == 2


def test_a_segment_request_is_one_request_and_logs_no_attributes(connection):
    connection.transport = Connection.Transport.V1
    outcomes.log_pending(
        connection, [claimed(connection), claimed(connection)], action="add_to_segment", segment_id=77, one_request=True
    )
    rows = list(Delivery.objects.all())
    assert len({r.request_id for r in rows}) == 1
    assert {(r.action, r.segment_id) for r in rows} == {("add_to_segment", 77)}
    assert all(r.attributes == {} for r in rows)


def test_a_v2_group_told_to_log_one_request_per_profile_does(connection):
    outcomes.log_pending(connection, [claimed(connection), claimed(connection)], one_request=False)
    assert Delivery.objects.values("request_id").distinct().count() == 2


# record_unsent


def test_skipped_cancelled_and_limit_failures_are_logged_at_once_and_their_rows_removed(frozen, connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    skipped, cancelled, too_big, fine = (claimed(connection) for _ in range(4))
    skipped.skip, cancelled.cancel, too_big.violation = "No customer ID.", "Not subscribed.", "Over 1000 bytes."
    report = ForwardReport()

    outcomes.record_unsent(connection, "t", [skipped, cancelled, too_big, fine], report)

    logged = {d.profile_id: d for d in Delivery.objects.all()}
    assert set(logged) == {skipped.profile_id, cancelled.profile_id, too_big.profile_id}
    assert (logged[skipped.profile_id].status, logged[skipped.profile_id].error) == ("skipped", "No customer ID.")
    assert (logged[cancelled.profile_id].status, logged[cancelled.profile_id].error) == ("cancelled", "Not subscribed.")
    assert (logged[too_big.profile_id].status, logged[too_big.profile_id].error) == ("failed", "Over 1000 bytes.")
    entry = logged[too_big.profile_id]
    assert (entry.reason, entry.transport, entry.attempt, entry.finished_at) == ("membership", "v2_batch", 1, NOW)
    assert entry.attributes == {"SegmentMembership": "'1'"} and entry.customer_id == too_big.customer_id
    assert (report.skipped, report.cancelled, report.failed) == (1, 1, 1)
    assert list(Forward.objects.values_list("profile_id", flat=True)) == [fine.profile_id]
    assert len([r for r in caplog.records if r.name == "cioaudience.forwarding"]) == 3


def test_nothing_unsent_logs_nothing(connection):
    outcomes.record_unsent(connection, "t", [claimed(connection)], ForwardReport())
    assert not Delivery.objects.exists() and Forward.objects.count() == 1


# record_result


def send(connection, group, answer, per_profile, report=None, again=frozenset()):
    logged = outcomes.log_pending(connection, group)
    report = report or ForwardReport()
    outcomes.record_result(connection, "t", logged, answer, per_profile, report, again)
    return report


def test_a_success_completes_the_log_and_deletes_the_rows(frozen, connection):
    p = claimed(connection, audiences=2)
    report = send(connection, [p], result(text="x" * 2500), [(p, Outcome.SUCCEEDED, "")])

    d = Delivery.objects.get()
    assert (d.status, d.http_status, d.duration_ms, d.finished_at, d.error) == ("succeeded", 200, 12, NOW, "")
    assert d.response == "x" * 2000, "the answer is kept, cut at 2,000 characters"
    assert not Forward.objects.exists()
    assert (report.succeeded, report.failed, report.retrying) == (1, 0, 0)


def test_a_207_fails_only_the_items_it_names_each_with_its_message(frozen, connection):
    good, bad, worse = claimed(connection), claimed(connection), claimed(connection)
    outcomes_ = [(good, Outcome.SUCCEEDED, ""), (bad, Outcome.FAILED, "bad email"), (worse, Outcome.FAILED, "too long")]
    report = send(connection, [good, bad, worse], result(status=207), outcomes_)

    statuses = {d.profile_id: (d.status, d.error) for d in Delivery.objects.all()}
    assert statuses == {
        good.profile_id: ("succeeded", ""),
        bad.profile_id: ("failed", "bad email"),
        worse.profile_id: ("failed", "too long"),
    }
    assert not Forward.objects.exists(), "a 400-like failure is final: not retried"
    assert (report.succeeded, report.failed) == (1, 2)


def test_a_transient_failure_is_logged_retrying_and_its_rows_wait_the_backoff(frozen, jitter, connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    first_try, third_try = claimed(connection, audiences=2), claimed(connection, attempts=2)
    answer = result(Outcome.RETRY, 503, text="down", error="HTTP 503.")
    report = send(
        connection,
        [first_try, third_try],
        answer,
        [(first_try, Outcome.RETRY, "503"), (third_try, Outcome.RETRY, "503")],
    )

    d1 = Delivery.objects.get(profile_id=first_try.profile_id)
    d3 = Delivery.objects.get(profile_id=third_try.profile_id)
    assert (d1.status, d1.error, d1.http_status, d1.response, d1.finished_at) == (
        "retrying",
        "503 Will retry.",
        503,
        "down",
        NOW,
    )
    assert d1.retry_at == NOW + timedelta(seconds=2) and d3.retry_at == NOW + timedelta(seconds=8)
    rows = Forward.objects.filter(profile_id=first_try.profile_id)
    assert rows.count() == 2, "never given up"
    assert {(r.claim_token, r.due_at, r.attempts) for r in rows} == {("", NOW + timedelta(seconds=2), 1)}
    assert Forward.objects.get(profile_id=third_try.profile_id).attempts == 3
    assert report.retrying == 2 and report.failed == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "cioaudience.forwarding"]
    assert len(lines) == 2 and all("status=retrying" in line and "http_status=503" in line for line in lines)


def test_retry_after_sets_the_retry_time_when_longer_than_the_backoff(frozen, jitter, connection):
    p = claimed(connection)
    send(connection, [p], result(Outcome.RETRY, 429, retry_after=60.0), [(p, Outcome.RETRY, "429")])
    assert Forward.objects.get().due_at == NOW + timedelta(seconds=60)
    assert Delivery.objects.get().retry_at == NOW + timedelta(seconds=60)


def test_profiles_of_one_request_with_different_errors_keep_their_own(frozen, jitter, connection):
    a, b = claimed(connection), claimed(connection)
    send(connection, [a, b], result(Outcome.RETRY, 500), [(a, Outcome.RETRY, "first"), (b, Outcome.RETRY, "second")])
    assert dict(Delivery.objects.values_list("profile_id", "error")) == {
        a.profile_id: "first Will retry.",
        b.profile_id: "second Will retry.",
    }


def test_rejected_credentials_fail_the_attempt_and_the_update_waits_untouched(frozen, connection):
    p = claimed(connection, attempts=1)
    answer = result(Outcome.CREDENTIALS_REJECTED, 401, error="HTTP 401.")
    report = send(connection, [p], answer, [(p, Outcome.CREDENTIALS_REJECTED, "HTTP 401.")])

    d = Delivery.objects.get()
    assert (d.status, d.error, d.http_status) == ("failed", "HTTP 401." + FAULTED_SUFFIX, 401)
    row = Forward.objects.get()
    assert (row.claim_token, row.due_at, row.attempts) == ("", NOW, 1), "back in the outbox, as it was"
    assert report.failed == 1


def test_a_profile_whose_segment_request_must_be_retried_keeps_its_rows_with_a_backoff(frozen, jitter, connection):
    # Its identify succeeded (logged so); the manual-segment request that followed did not.
    retried, done = claimed(connection, attempts=1, audiences=2), claimed(connection)
    report = send(
        connection,
        [retried, done],
        result(),
        [(retried, Outcome.SUCCEEDED, ""), (done, Outcome.SUCCEEDED, "")],
        again={retried.profile_id},
    )

    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    rows = Forward.objects.all()
    assert {r.profile_id for r in rows} == {retried.profile_id} and rows.count() == 2
    assert {(r.claim_token, r.due_at, r.attempts) for r in rows} == {("", NOW + timedelta(seconds=4), 2)}
    assert report.succeeded == 2


def test_segment_retries_of_different_attempts_get_each_their_own_backoff(frozen, jitter, connection):
    one, three = claimed(connection), claimed(connection, attempts=2)
    send(
        connection,
        [one, three],
        result(),
        [(one, Outcome.SUCCEEDED, ""), (three, Outcome.SUCCEEDED, "")],
        again={one.profile_id, three.profile_id},
    )
    due = dict(Forward.objects.values_list("profile_id", "due_at"))
    assert due == {one.profile_id: NOW + timedelta(seconds=2), three.profile_id: NOW + timedelta(seconds=8)}


# log_outcome


def test_nothing_is_formatted_when_info_is_off(connection, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="cioaudience.forwarding")

    def must_not_run(*args, **kwargs):
        raise AssertionError("formatted a line nobody logs")

    monkeypatch.setattr(outcomes, "logfmt", must_not_run)
    outcomes.log_outcome(connection, "c1", "succeeded", 200, "", 1)
    assert not caplog.records


def test_an_outcome_line_names_the_connection_the_person_and_the_attempt(connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    outcomes.log_outcome(connection, "c1", "failed", 400, "bad", 2)
    outcomes.log_outcome(connection, "c2", "succeeded", 200, "", 1)
    first, second = (r.getMessage() for r in caplog.records)
    assert (
        first == f"delivery connection={connection.pk} customer_id=c1 status=failed http_status=400 attempt=2 error=bad"
    )
    assert second.endswith(" attempt=1 error=-"), "no error: shown as a dash"


def test_a_backoff_under_a_second_is_not_rounded_up(jitter, settings):
    # A short FORWARD_BACKOFF_BASE (the demo's, or a test's) is honoured: there is no floor.
    settings.FORWARD_BACKOFF_BASE = 0.2
    jitter["which"] = "low"
    assert backoff_seconds(1, None) == pytest.approx(0.1)


def test_each_profile_of_a_request_gets_its_own_log_line(frozen, connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    good, bad = claimed(connection, customer_id="good-1"), claimed(connection, customer_id="bad-2", attempts=4)
    send(
        connection, [good, bad], result(status=207), [(good, Outcome.SUCCEEDED, ""), (bad, Outcome.FAILED, "bad email")]
    )

    lines = [r.getMessage() for r in caplog.records if r.name == "cioaudience.forwarding"]
    assert lines == [
        f"delivery connection={connection.pk} customer_id=good-1 status=succeeded http_status=207 attempt=1 error=-",
        f"delivery connection={connection.pk} customer_id=bad-2 status=failed http_status=207 attempt=5"
        ' error="bad email"',
    ]


def test_a_runs_report_keeps_counting_failures_across_requests(frozen, connection):
    p = claimed(connection)
    earlier = ForwardReport(failed=2)
    answer = result(Outcome.CREDENTIALS_REJECTED, 403, error="HTTP 403.")
    send(connection, [p], answer, [(p, Outcome.CREDENTIALS_REJECTED, "HTTP 403.")], report=earlier)
    assert earlier.failed == 3


def test_unsent_profiles_are_each_counted_and_logged_with_their_attempt(frozen, connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    unsent = [claimed(connection, customer_id=f"u{i}", attempts=2) for i in range(6)]
    for p in unsent[:2]:
        p.skip = "No customer ID."
    for p in unsent[2:4]:
        p.cancel = "Not subscribed."
    for p in unsent[4:]:
        p.violation = "Over 1000 bytes."
    report = ForwardReport()

    outcomes.record_unsent(connection, "t", unsent, report)

    assert (report.skipped, report.cancelled, report.failed) == (2, 2, 2)
    assert set(Delivery.objects.values_list("attempt", flat=True)) == {3}
    lines = [r.getMessage() for r in caplog.records if r.name == "cioaudience.forwarding"]
    assert (
        lines[0] == f"delivery connection={connection.pk} customer_id=u0 status=skipped http_status=- attempt=3"
        ' error="No customer ID."'
    )
    assert lines[2].startswith(
        f"delivery connection={connection.pk} customer_id=u2 status=cancelled http_status=- attempt=3 "
    )
    assert lines[4].startswith(
        f"delivery connection={connection.pk} customer_id=u4 status=failed http_status=- attempt=3 "
    )
