"""The circuit breaker and the connection-wide pause (SPEC section 4), over real HTTP to the stand-in.

These call the worker path directly; tests/reliability/test_outage.py runs the same rules with real
workers, and bench/outage.py with the default timings.
"""

import logging
import time

import pytest
from django.utils import timezone

from cio_standin import Faults
from connections.models import Connection, Delivery, Forward
from connections.services.connection import breaker
from connections.services.connection import transitions as connection_state
from connections.services.forwarding.delivery_log import backoff_seconds
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def quick_breaker(settings):
    """The breaker's window shortened so that a test need not wait 10 s; the defaults run in
    test_the_default_rule_needs_ten_seconds_of_failures and bench/outage.py."""
    settings.BREAKER_MIN_SECONDS = 0.3
    settings.BREAKER_PROBE_BASE = 0.2
    settings.BREAKER_PROBE_MAX = 1.0


def connect(workspace_connection, transport="v2_batch", audience_ids=(1,)):
    connection = workspace_connection("site-us", transport=transport)
    for audience_id in audience_ids:
        subscriptions.subscribe(AudienceFactory(audience_id=audience_id, name=f"A{audience_id}"), connection)
    return connection


def change(customer_ids, audience_id=1, member=True):
    apply_changes([ProfileChange(ProfileInput(customer_id=c), {audience_id: member}) for c in customer_ids])


def make_due():
    Forward.objects.update(due_at=timezone.now())


def open_breaker(connection, standin):
    """Fail requests until the breaker opens (an outage: no answer at all)."""
    standin.start_outage("503", 60)
    for _ in range(50):
        forward_pending(connection.pk)
        connection.refresh_from_db()
        if connection.state == Connection.State.BACKING_OFF:
            return
        make_due()
        time.sleep(0.05)
    raise AssertionError("the breaker did not open")


def test_an_outage_opens_the_breaker_and_logs_it_once(quick_breaker, standin, workspace_connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.breaker")
    connection = connect(workspace_connection)
    change(["c1"])

    open_breaker(connection, standin)

    assert connection.consecutive_failures >= 5 and connection.state_changed_at and connection.next_probe_at
    assert "stand-in outage" in connection.last_error
    opened = [r.getMessage() for r in caplog.records if "new=backing_off" in r.getMessage()]
    assert len(opened) == 1 and "transient failures in a row" in opened[0]
    assert not Delivery.objects.filter(status=Delivery.Status.FAILED).exists()


def test_failures_with_answers_between_them_never_open_it(quick_breaker, standin, workspace_connection):
    connection = connect(workspace_connection)
    for round_ in range(12):
        change([f"c{round_}"])
        standin.set_faults(Faults(share=1.0, statuses=[500]) if round_ % 2 else Faults())
        forward_pending(connection.pk)
        make_due()
        time.sleep(0.05)

    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE and connection.consecutive_failures <= 1


def test_the_default_rule_needs_ten_seconds_of_failures(standin, workspace_connection, settings):
    assert (settings.BREAKER_FAILURES, settings.BREAKER_MIN_SECONDS) == (5, 10.0)
    connection = connect(workspace_connection)
    change(["c1"])
    standin.start_outage("503", 60)
    for _ in range(8):  # 8 failures in well under 10 s: not yet an outage
        forward_pending(connection.pk)
        make_due()
    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE and connection.consecutive_failures == 8

    Connection.objects.filter(pk=connection.pk).update(failing_since=timezone.now() - timezone.timedelta(seconds=11))
    forward_pending(connection.pk)
    connection.refresh_from_db()
    assert connection.state == Connection.State.BACKING_OFF


def test_while_backing_off_nothing_but_one_due_probe_is_sent(quick_breaker, standin, workspace_connection):
    connection = connect(workspace_connection, transport="v1")
    change([f"c{i}" for i in range(20)])
    open_breaker(connection, standin)
    sent_before = standin.state.outage.failed_requests
    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now() + timezone.timedelta(hours=1))
    make_due()

    report = forward_pending(connection.pk)

    assert report.backing_off and report.requests == 0
    assert standin.state.outage.failed_requests == sent_before

    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now())
    report = forward_pending(connection.pk)

    assert report.requests == 1 and standin.state.outage.failed_requests == sent_before + 1
    connection.refresh_from_db()
    assert connection.state == Connection.State.BACKING_OFF and connection.failed_probes == 1
    assert connection.next_probe_at > timezone.now()


def test_a_successful_probe_closes_it_and_the_backlog_drains_at_once(quick_breaker, standin, workspace_connection):
    connection = connect(workspace_connection, transport="v1")
    change([f"c{i}" for i in range(20)])
    open_breaker(connection, standin)
    standin.end_outage()
    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now())

    report = forward_pending(connection.pk)  # rows still in their backoff: drained all the same

    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE and connection.consecutive_failures == 0
    assert report.succeeded == 20 and set(standin.people("site-us")) == {f"c{i}" for i in range(20)}
    assert not Forward.objects.exists()
    assert not Delivery.objects.filter(status=Delivery.Status.FAILED).exists()


def test_a_probe_with_nothing_due_asks_for_the_region(quick_breaker, standin, workspace_connection):
    connection = connect(workspace_connection)
    change(["c1"])
    open_breaker(connection, standin)
    standin.end_outage()
    Forward.objects.update(due_at=timezone.now() + timezone.timedelta(hours=1))
    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now())

    forward_pending(connection.pk)

    assert next(r.path for r in standin.requests("site-us") if r.status == 200) == "/api/v1/accounts/region"
    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE
    assert standin.people("site-us")["c1"] == {"SegmentMembership": "'1'"}


def test_probes_grow_apart_up_to_the_cap_with_jitter(settings):
    assert (settings.BREAKER_PROBE_BASE, settings.BREAKER_PROBE_MAX) == (5.0, 300.0)
    intervals = [[breaker.probe_interval(n) for _ in range(50)] for n in range(12)]
    assert all(2.5 <= i <= 5.0 for i in intervals[0])
    assert all(5.0 <= i <= 10.0 for i in intervals[1])
    assert all(150.0 <= i <= 300.0 for i in intervals[11])  # at most 5 minutes apart
    assert len({round(i, 6) for i in intervals[3]}) > 40  # jittered


def test_row_backoff_grows_is_capped_and_honours_retry_after(settings):
    assert (settings.FORWARD_BACKOFF_BASE, settings.FORWARD_BACKOFF_MAX) == (2.0, 300.0)
    assert all(1.0 <= backoff_seconds(1, None) <= 2.0 for _ in range(50))
    assert all(8.0 <= backoff_seconds(4, None) <= 16.0 for _ in range(50))
    assert all(150.0 <= backoff_seconds(40, None) <= 300.0 for _ in range(50))
    assert backoff_seconds(1, 120.0) == 120.0  # Retry-After asked for longer
    assert len({round(backoff_seconds(3, None), 6) for _ in range(50)}) > 40


def test_a_429_pauses_the_whole_connection(standin, workspace_connection):
    connection = connect(workspace_connection)
    change(["c1", "c2"])
    standin.set_faults(Faults(share=1.0, statuses=[429], retry_after=2))
    forward_pending(connection.pk)
    standin.clear_faults()
    change(["c3"])  # another profile, due now, as another worker would find it
    requests = len(standin.requests())

    report = forward_pending(connection.pk)

    assert report.paused_for > 1 and report.requests == 0 and len(standin.requests()) == requests
    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE  # a 429 is an answer: it never opens the breaker


def test_resume_and_probe_now_end_a_backing_off(quick_breaker, standin, workspace_connection):
    connection = connect(workspace_connection)
    change(["c1"])
    open_breaker(connection, standin)
    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now() + timezone.timedelta(hours=1))

    assert breaker.probe_now(connection)
    connection.refresh_from_db()
    assert connection.next_probe_at <= timezone.now()

    standin.end_outage()
    assert connection_state.resume(connection)
    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE and connection.failed_probes == 0
    assert not breaker.probe_now(connection)  # only while backing off
    forward_pending(connection.pk)
    assert standin.people("site-us")["c1"] == {"SegmentMembership": "'1'"}


def test_the_backlog_stays_one_row_per_profile_and_audience_however_many_changes(
    quick_breaker, standin, workspace_connection
):
    connection = connect(workspace_connection, audience_ids=(1, 2))
    profiles = [f"c{i}" for i in range(50)]
    change(profiles)
    open_breaker(connection, standin)
    for round_ in range(20):  # 20 changes per profile and audience during the outage
        change(profiles, audience_id=1 + round_ % 2, member=round_ % 4 < 2)

    assert Forward.objects.count() == 100
    assert Forward.objects.values("profile", "audience").distinct().count() == 100


def test_the_sweep_wakes_due_work_and_due_probes_but_not_paused_or_faulted_connections(
    workspace_connection, caplog
):
    from connections.tasks import sweep
    from tests.support.factories import ConnectionFactory
    from tests.support.workers import purge_broker

    caplog.set_level(logging.INFO, logger="cioaudience.tasks")
    due = connect(workspace_connection)
    change(["c1"])
    profile = Forward.objects.get().profile
    now = timezone.now()
    paused = ConnectionFactory(paused_until=now + timezone.timedelta(minutes=1))
    faulted = ConnectionFactory(state=Connection.State.FAULTED)
    probing = ConnectionFactory(state=Connection.State.BACKING_OFF, next_probe_at=now)
    waiting = ConnectionFactory(state=Connection.State.BACKING_OFF, next_probe_at=now + timezone.timedelta(minutes=1))
    for other in (paused, faulted, waiting):
        Forward.objects.create(connection=other, profile=profile, reason="membership", due_at=now, created_at=now)
    purge_broker()

    assert sweep() == 2
    assert f"sweep re-enqueued connections={sorted([due.pk, probing.pk])}" in caplog.messages
    purge_broker()


def test_each_transition_is_one_row_of_the_connections_history(quick_breaker, standin, workspace_connection):
    from connections.models import ConnectionStateChange

    connection = connect(workspace_connection)
    change(["c1"])
    open_breaker(connection, standin)
    standin.end_outage()
    Connection.objects.filter(pk=connection.pk).update(next_probe_at=timezone.now())
    forward_pending(connection.pk)

    history = list(ConnectionStateChange.objects.order_by("pk").values_list("from_state", "to_state"))
    assert history == [("active", "backing_off"), ("backing_off", "active")]
