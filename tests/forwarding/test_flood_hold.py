"""A flood's sends wait until its changes pause (or the oldest has waited the ceiling), so the same
people changing again and again are sent about once (connections/services/forwarding/flood_hold.py)."""

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection as db
from django.utils import timezone

from connections.models import Connection, Forward
from connections.services.forwarding import flood_hold
from connections.services.forwarding import worker as forwarding
from connections.services.forwarding.flood_hold import seconds_to_hold
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.outbox import wakeup
from connections.tasks import forward_connection
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

# The rule is exercised with the values users run, not shortened ones.
QUIET = django_settings.FORWARD_HOLD_QUIET_SECONDS
CEILING = django_settings.FORWARD_HOLD_MAX_SECONDS
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_defaults_are_a_tenth_of_a_second_of_quiet_and_a_one_second_ceiling():
    assert (QUIET, CEILING) == (0.1, 1.0)


def test_nothing_due_holds_nothing():
    assert seconds_to_hold(None, None, at(0), QUIET, CEILING) == 0.0


def test_a_lone_change_waits_the_quiet_moment_then_goes():
    assert seconds_to_hold(at(0), at(0), at(0), QUIET, CEILING) == pytest.approx(QUIET)
    assert seconds_to_hold(at(0), at(0), at(QUIET * 0.75), QUIET, CEILING) == pytest.approx(QUIET * 0.25)
    assert seconds_to_hold(at(0), at(0), at(QUIET), QUIET, CEILING) == 0.0


def test_changes_still_arriving_hold_until_they_pause():
    # The newest change came a quarter of the quiet moment ago; the oldest 0.5 s ago: wait for the rest.
    newest = 0.5 - QUIET / 4
    assert seconds_to_hold(at(0), at(newest), at(0.5), QUIET, CEILING) == pytest.approx(QUIET * 0.75)


def test_a_flood_that_never_pauses_is_sent_at_the_ceiling():
    assert seconds_to_hold(at(0), at(0.9), at(0.9), QUIET, CEILING) == pytest.approx(CEILING - 0.9)
    assert seconds_to_hold(at(0), at(1.0), at(1.0), QUIET, CEILING) == 0.0
    assert seconds_to_hold(at(0), at(5.0), at(5.0), QUIET, CEILING) == 0.0


def test_a_backlog_is_sent_at_once():
    # An outage's or a resync's rows waited long ago; a fresh change among them does not hold them.
    assert seconds_to_hold(at(-600), at(0), at(0), QUIET, CEILING) == 0.0


def test_a_quiet_of_zero_turns_holding_off():
    assert seconds_to_hold(at(0), at(0), at(0), 0.0, CEILING) == 0.0


def test_a_ceiling_under_a_second_is_honoured():
    assert seconds_to_hold(at(0), at(0.45), at(0.45), QUIET, 0.5) == pytest.approx(0.05)


@pytest.fixture
def flooded(workspace_connection, standin):
    connection = workspace_connection("site-us", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=7, name="Flood"), connection)
    apply_changes([ProfileChange(ProfileInput(customer_id="f1"), {7: True})])  # due just now
    return connection


@pytest.mark.django_db
def test_one_caller_takes_the_hold_and_the_others_leave_it_to_it(flooded):
    seconds, come_back_at = flood_hold.hold(flooded.pk)
    assert 0 < seconds <= QUIET and come_back_at is not None
    assert Connection.objects.get(pk=flooded.pk).forward_hold_until == come_back_at

    # Another wake-up during the hold: it must hold too, but will not come back.
    seconds_again, none = flood_hold.hold(flooded.pk)
    assert seconds_again > 0 and none is None
    # The task the hold scheduled may take it again (it came back early, or changes kept coming).
    _, again = flood_hold.hold(flooded.pk, held_until=come_back_at)
    assert again is not None


@pytest.mark.django_db
def test_a_connection_with_holding_off_or_nothing_due_is_not_held(flooded, settings):
    settings.FORWARD_HOLD_QUIET_SECONDS = 0
    assert flood_hold.hold(flooded.pk) == (0.0, None)
    settings.FORWARD_HOLD_QUIET_SECONDS = QUIET
    Forward.objects.all().delete()
    assert flood_hold.hold(flooded.pk) == (0.0, None)
    assert Connection.objects.get(pk=flooded.pk).forward_hold_until is None


@pytest.mark.django_db
def test_one_connections_flood_neither_holds_nor_takes_another_connections_hold(flooded, workspace_connection):
    # The other connection has a backlog (an outage's rows) and no hold; this one is flooding.
    backlog = workspace_connection("site-eu", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=8, name="Backlog"), backlog)
    apply_changes([ProfileChange(ProfileInput(customer_id="b1"), {8: True})])
    Forward.objects.filter(connection=backlog).update(due_at=timezone.now() - timedelta(seconds=600))

    assert flood_hold.hold(backlog.pk) == (0.0, None)  # sent at once, whatever the flood elsewhere
    _, come_back_at = flood_hold.hold(flooded.pk)
    assert come_back_at is not None
    assert Connection.objects.get(pk=backlog.pk).forward_hold_until is None


@pytest.mark.django_db
def test_the_returning_task_takes_the_hold_again_once_it_was_released(flooded):
    earlier = timezone.now() - timedelta(seconds=5)  # the hold it was scheduled for, long over
    Connection.objects.filter(pk=flooded.pk).update(forward_hold_until=None)
    _, come_back_at = flood_hold.hold(flooded.pk, held_until=earlier)
    assert come_back_at is not None


@pytest.mark.django_db
def test_after_the_hold_ends_any_caller_may_take_the_next(flooded):
    Connection.objects.filter(pk=flooded.pk).update(forward_hold_until=timezone.now() - timedelta(seconds=1))
    _, come_back_at = flood_hold.hold(flooded.pk)
    assert come_back_at is not None


@pytest.mark.django_db
def test_a_task_run_in_process_sends_at_once(flooded, standin, monkeypatch):
    # apply() (and eager mode) runs the task here and now: it could not come back after a hold.
    scheduled = []
    monkeypatch.setattr(forward_connection, "apply_async", lambda args, countdown: scheduled.append((args, countdown)))
    forward_connection.apply(args=(flooded.pk,), throw=True)
    assert "f1" in standin.people("site-us") and scheduled == []


@pytest.mark.django_db
def test_the_holding_task_comes_back_once_and_sends_then(flooded, standin, monkeypatch):
    scheduled = []
    monkeypatch.setattr(forward_connection, "apply_async", lambda args, countdown: scheduled.append((args, countdown)))

    forward_connection(flooded.pk)  # the wake-up of the change: it holds
    forward_connection(flooded.pk)  # a second wake-up meanwhile: nothing more is scheduled
    assert standin.requests("site-us") == []
    ((args, countdown),) = scheduled
    assert args[0] == flooded.pk and 0 < countdown <= QUIET

    time.sleep(countdown)
    forward_connection(*args)  # the task the hold scheduled, when it is due
    assert "f1" in standin.people("site-us")
    assert not Forward.objects.exists()
    assert len(scheduled) == 1


@pytest.fixture
def worker_connection(standin, workspace_connection):
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000)
    for audience_id in (1, 2, 3):
        subscriptions.subscribe(AudienceFactory(audience_id=audience_id, name=f"A{audience_id}"), connection)
    return connection


def profile_updates(standin) -> Counter:
    sent = Counter()
    for request in standin.requests("site-us"):
        if request.applied:
            sent.update(request.identifiers)
    return sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.timeout(180)
def test_people_changing_four_times_in_a_flood_are_sent_about_once(worker_connection, standin):
    people = [f"p{i}" for i in range(50)]
    rounds = [{1: True}, {2: True}, {3: True}, {1: False}]
    with running_workers(standin.url):
        apply_changes([ProfileChange(ProfileInput(customer_id="warm"), {1: True})])
        wait_until(lambda: "warm" in standin.people("site-us"), message="the workers to be up")
        for memberships in rounds:  # four Firehose messages about the same people, 20 ms apart
            apply_changes([ProfileChange(ProfileInput(customer_id=c), memberships) for c in people])
            time.sleep(0.02)
        wait_until(
            lambda: all(standin.people("site-us").get(c, {}).get("SegmentMembership") == "'2','3'" for c in people),
            message="every person's final state at the stand-in",
        )

    sent = profile_updates(standin)
    del sent["warm"]
    # Without the hold each person was sent up to once per change (200 updates); with it, once,
    # or twice if the machine stalled between two commits for longer than the quiet moment.
    assert set(sent) == set(people)
    assert sum(sent.values()) <= 2 * len(people), sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.timeout(180)
def test_a_flood_that_never_pauses_is_still_sent_while_it_lasts(worker_connection, standin):
    stop = threading.Event()
    with running_workers(standin.url):
        apply_changes([ProfileChange(ProfileInput(customer_id="first"), {1: True})])
        started = time.monotonic()

        def stream() -> None:  # a new change every 20 ms: never the quiet moment
            i = 0
            try:
                while not stop.is_set() and time.monotonic() - started < 30:
                    apply_changes([ProfileChange(ProfileInput(customer_id=f"s{i}"), {1: True})])
                    i += 1
                    time.sleep(0.02)
            finally:
                db.close()  # this thread's own database connection

        feeder = threading.Thread(target=stream)
        feeder.start()
        try:
            wait_until(lambda: "first" in standin.people("site-us"), timeout=25, message="the first change, mid-flood")
            arrived = time.monotonic() - started
            streaming = feeder.is_alive()
        finally:
            stop.set()
            feeder.join()

    assert streaming, "the flood was over before the first change was sent"
    # Sent at the ceiling (1 s after it became due) plus a send, not when the flood ends (30 s).
    assert arrived < CEILING + 5, arrived


@pytest.mark.django_db
def test_a_full_claim_wakes_another_worker_for_the_next_batch(flooded, standin, settings, monkeypatch):
    woken = []
    monkeypatch.setattr(wakeup, "forward_now", lambda connection_id, countdown=None: woken.append(connection_id))
    settings.FORWARD_BATCH_SIZE = 2  # a size, not a timing: three people make one full claim
    apply_changes([ProfileChange(ProfileInput(customer_id=c), {7: True}) for c in ("f2", "f3")])
    Forward.objects.update(due_at=timezone.now() - timedelta(seconds=CEILING))  # released by the hold

    report = forwarding.forward_pending(flooded.pk, hold=True)

    assert report.sent == 3 and woken == [flooded.pk]  # after the full claim of 2, not the last of 1
    # Sending in-process (the resync command) wakes nobody.
    apply_changes([ProfileChange(ProfileInput(customer_id=c), {7: False}) for c in ("f1", "f2", "f3")])
    Forward.objects.update(due_at=timezone.now() - timedelta(seconds=CEILING))
    assert forwarding.forward_pending(flooded.pk).sent == 3 and woken == [flooded.pk]
