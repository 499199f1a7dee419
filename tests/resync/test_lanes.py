"""A large streamed run split by profile id into lanes, sent by several workers at once (issue 29).

STREAM_LANE_MIN_PEOPLE is 2 here (the default, 50,000, is held by bench/large_audience.py), a page
2 people and BACKFILL_INLINE_MAX 3, so that 12 members make two lanes of a few pages. Splitting
needs PostgreSQL (SQLite has one writer at a time: a run is never split there, tested below).
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone

from connections.models import BatchDelivery, ResyncRun, Subscription
from connections.services.forwarding import claims
from connections.services.ingest import memberships, subscriptions
from connections.services.outbox import wakeup
from connections.services.resync import backfill, lanes
from connections.services.resync import runs as resync
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory

pytestmark = pytest.mark.django_db
SITE = "site-us"
needs_postgres = pytest.mark.skipif(db.vendor != "postgresql", reason="lanes need PostgreSQL (SQLite: one writer)")


@pytest.fixture(autouse=True)
def small_lanes(settings):
    settings.BACKFILL_INLINE_MAX = 3
    settings.FORWARD_BATCH_SIZE = 2
    settings.STREAM_LANES = 2
    settings.STREAM_LANE_MIN_PEOPLE = 2


@pytest.fixture
def subscribed(standin, workspace_connection, monkeypatch):
    """An audience of 12 members on a v2 connection (toggle on), its run recorded; tasks recorded, not sent."""
    published = []
    monkeypatch.setattr(
        wakeup, "send_task", lambda name, args, countdown=None, kwargs=None: published.append((args, kwargs)) or True
    )
    audience = AudienceFactory(audience_id=77, name="Big")
    members = [MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n:02d}")) for n in range(12)]
    connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True)
    subscriptions.subscribe(audience, connection)
    return connection, audience, [m.profile for m in members], published


def split_only(connection, audience):
    """The recorded run split, nothing sent yet."""
    run = ResyncRun.objects.get()
    run.total = 12
    return run, lanes.split(run, resync.Scope(connection, audience, (audience.pk,), "activation"))


def first_turn(connection, audience):
    """The run's first turn, which splits it; the run and its lanes."""
    run = carry(connection, audience).run
    return run, list(ResyncRun.objects.filter(lane_of=run))


def carry(connection, audience, lane=None):
    turn = backfill.queue_for(connection.pk, audience.pk, "activation", 60.0, lane=lane)
    assert turn.finished, turn
    return turn


@needs_postgres
def test_a_large_run_is_split_into_lanes_at_its_first_turn(standin, subscribed):
    connection, audience, members, _ = subscribed

    turn = carry(connection, audience)

    run, [lane] = turn.run, list(ResyncRun.objects.filter(lane_of=turn.run))
    ids = sorted(p.pk for p in members)
    assert run.lane_end == ids[0] - 1 + len(ids) // 2  # equal id ranges: 6 people each
    assert (lane.lane_of_id, lane.last_profile_id, lane.lane_end) == (run.pk, run.lane_end, None)
    sent = set(standin.people(SITE))
    assert sent == {p.customer_id for p in members if p.pk <= run.lane_end}  # the run sent its own range only
    run.refresh_from_db()
    assert run.status == "running" and run.queued == 6  # not finished while a lane is left


@needs_postgres
def test_the_run_is_finished_by_whichever_range_finishes_last_and_counts_every_lane(standin, subscribed):
    connection, audience, members, _ = subscribed
    run, [lane] = first_turn(connection, audience)

    carry(connection, audience, lane=lane.pk)

    run.refresh_from_db()
    lane.refresh_from_db()
    assert (run.status, lane.status) == ("done", "done")
    assert run.queued == 12 and lane.queued == 6
    people = standin.people(SITE)
    assert {cid: people[cid]["In Big"] for cid in people} == {p.customer_id: "true" for p in members}
    batches = BatchDelivery.objects.filter(action="identify")
    assert set(batches.values_list("run_id", flat=True)) == {run.pk}  # the run's log holds its lanes' requests
    assert sorted(pid for b in batches for pid in b.profile_ids) == sorted(p.pk for p in members)  # each once


@needs_postgres
def test_a_lane_that_finishes_first_leaves_the_run_running_until_the_run_s_own_range_is_done(standin, subscribed):
    connection, audience, _, _ = subscribed
    run, [lane] = split_only(connection, audience)

    carry(connection, audience, lane=lane.pk)
    run.refresh_from_db()
    assert run.status == "running" and run.queued == 6

    carry(connection, audience)
    run.refresh_from_db()
    assert run.status == "done" and run.queued == 12
    assert len(standin.people(SITE)) == 12


@needs_postgres
def test_the_task_that_splits_the_run_hands_each_lane_to_a_worker(standin, subscribed):
    from connections.tasks import backfill_audience

    connection, audience, _, published = subscribed
    published.clear()

    backfill_audience(connection.pk, audience.pk, "activation")

    lane = ResyncRun.objects.get(lane_of__isnull=False)
    assert ([connection.pk, audience.pk, "activation"], {"lane": lane.pk}) in published


@needs_postgres
def test_a_change_to_a_person_in_a_lane_s_page_in_flight_waits_for_it(standin, subscribed):
    connection, audience, members, _ = subscribed
    run, [lane] = split_only(connection, audience)
    inside, outside = [p for p in members if p.pk > run.lane_end][:2]
    for person in (inside, outside):
        change = memberships.ProfileChange(
            profile=memberships.ProfileInput(customer_id=person.customer_id), memberships={77: False}
        )
        memberships.apply_changes([change])
    # The lane's page of its first person is in flight, under the lane's lease.
    ResyncRun.objects.filter(pk=lane.pk).update(
        inflight_to=inside.pk, claimed_until=timezone.now() + timedelta(seconds=30), status="running"
    )

    token, rows = claims.claim(connection.pk, 10)

    assert {r.profile_id for r in rows} == {outside.pk}  # the lane's mark holds the change back
    claims.release(token)
    ResyncRun.objects.filter(pk=lane.pk).update(inflight_to=None)  # the page was answered
    token, rows = claims.claim(connection.pk, 10)
    assert {r.profile_id for r in rows} == {inside.pk, outside.pk}


@needs_postgres
def test_the_sweep_resumes_a_stalled_lane_as_a_lane(standin, subscribed, settings):
    connection, audience, _, published = subscribed
    run, [lane] = first_turn(connection, audience)
    long_ago = timezone.now() - timedelta(seconds=settings.FORWARD_CLAIM_SECONDS + 1)
    ResyncRun.objects.filter(pk__in=[run.pk, lane.pk]).update(updated_at=long_ago)
    published.clear()

    resumed = backfill.resume_stalled()

    assert sorted(resumed) == sorted([run.pk, lane.pk])
    assert ([connection.pk, audience.pk, "activation"], {"lane": lane.pk}) in published
    assert ([connection.pk, audience.pk, "activation"], None) in published


@needs_postgres
def test_a_new_backfill_of_a_split_run_starts_every_lane_again(standin, subscribed, django_capture_on_commit_callbacks):
    connection, audience, _, published = subscribed
    run, [lane] = first_turn(connection, audience)
    carry(connection, audience, lane=lane.pk)  # all sent: the run is done
    ResyncRun.objects.filter(pk=run.pk).update(status="running")  # as if a rename came before the end
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        backfill.backfill(connection.pk, audience.pk, "activation")

    run.refresh_from_db()
    lane.refresh_from_db()
    assert (run.last_profile_id, run.queued) == (0, 0)
    assert (lane.last_profile_id, lane.queued, lane.status) == (run.lane_end, 0, "running")
    assert ([connection.pk, audience.pk, "activation"], {"lane": lane.pk}) in published  # its task had ended


def test_a_run_below_lanes_times_the_minimum_is_not_split(standin, subscribed, settings):
    connection, audience, _, _ = subscribed
    settings.STREAM_LANE_MIN_PEOPLE = 7  # 12 < 2 x 7

    turn = carry(connection, audience)

    assert turn.run.lane_end is None and turn.run.status == "done"
    assert ResyncRun.objects.count() == 1 and len(standin.people(SITE)) == 12


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_manage_py_resync_sends_the_other_lane_from_a_process_of_its_own(standin, workspace_connection, capsys):
    audience = AudienceFactory(audience_id=77, name="Big")
    members = [MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n:02d}")) for n in range(12)]
    connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True)
    Subscription.objects.create(audience=audience, connection=connection)  # no activation: the resync sends

    call_command("resync", "--connection", str(connection.pk), "-v0")

    run = ResyncRun.objects.get(lane_of=None)
    lane = ResyncRun.objects.get(lane_of=run)
    assert (run.status, lane.status, run.queued) == ("done", "done", 12)
    people = standin.people(SITE)
    assert {cid: people[cid]["In Big"] for cid in people} == {m.profile.customer_id: "true" for m in members}
    assert "succeeded: 12" in capsys.readouterr().out


@needs_postgres
@pytest.mark.worker
@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True)
def test_two_workers_send_the_lanes_and_a_change_racing_a_lane_s_page_is_sent_after_it(standin, workspace_connection):
    from cio_standin import Faults
    from connections.models import Audience, Forward, Profile
    from tests.support.workers import purge_broker, running_workers, wait_until

    purge_broker()
    audience = Audience.objects.create(audience_id=77, name="Big")
    for n in range(40):
        MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n:02d}"))
    connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True)
    standin.set_faults(Faults(delay_ms=300, path_contains="/api/v2/batch"))  # a page stays in flight a while
    small = {"BACKFILL_INLINE_MAX": "3", "FORWARD_BATCH_SIZE": "5", "STREAM_LANES": "2", "STREAM_LANE_MIN_PEOPLE": "5"}
    found: list[Profile] = []

    def lane_page_in_flight() -> bool:  # the lane's last person of a page in flight, past its first page
        lane = ResyncRun.objects.filter(lane_of__isnull=False).first()
        if lane is None or lane.inflight_to is None or lane.queued == 0:
            return False
        found[:] = [Profile.objects.get(pk=lane.inflight_to)]
        return True

    with running_workers(standin.url, concurrency=2, **small):
        subscriptions.subscribe(audience, connection)
        wait_until(lane_page_in_flight, timeout=60, interval=0.01, message="a page of the lane to be in flight")
        person = found[0]
        change = memberships.ProfileChange(
            profile=memberships.ProfileInput(customer_id=person.customer_id), memberships={77: False}
        )
        memberships.apply_changes([change])
        wait_until(
            lambda: ResyncRun.objects.get(lane_of=None).status == "done" and not Forward.objects.exists(),
            timeout=90,
            message="the run and the change to be sent",
        )

    run = ResyncRun.objects.get(lane_of=None)
    assert ResyncRun.objects.get(lane_of=run).status == "done" and run.queued == 40
    people = standin.people(SITE)
    assert len(people) == 40 and people[person.customer_id]["In Big"] == "false"
    pages = [r for r in standin.requests(SITE) if r.path == "/api/v2/batch" and person.customer_id in r.identifiers]
    page, later = pages[0], [r for r in standin.requests(SITE) if person.customer_id in r.identifiers][1:]
    assert later and all(r.monotonic >= page.answered for r in later), "the change went before the page's answer"
    # Both ranges were under way at once: the lane's first request started before the run's last was answered.
    batches = sorted((r for r in standin.requests(SITE) if r.path == "/api/v2/batch"), key=lambda r: r.monotonic)
    first_half = {f"m{n:02d}" for n in range(20)}
    lane_start = min(r.monotonic for r in batches if not set(r.identifiers) & first_half)
    assert lane_start < max(r.answered for r in batches if set(r.identifiers) & first_half)


@needs_postgres
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_ctrl_c_of_manage_py_resync_stops_every_lane_and_the_next_run_resumes_them(standin, workspace_connection):
    import os
    import signal
    import subprocess
    import sys

    from cio_standin import Faults
    from tests.support.workers import ROOT, wait_until, worker_env

    audience = AudienceFactory(audience_id=77, name="Big")
    for n in range(40):
        MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n:02d}"))
    connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True)
    Subscription.objects.create(audience=audience, connection=connection)
    standin.set_faults(Faults(delay_ms=300, path_contains="/api/v2/batch"))  # pages stay in flight a while
    small = {
        "FORWARD_BATCH_SIZE": "5",
        "STREAM_PAGES_IN_FLIGHT": "1",
        "STREAM_LANES": "2",
        "STREAM_LANE_MIN_PEOPLE": "5",
    }
    command = [sys.executable, "manage.py", "resync", "--connection", str(connection.pk), "-v0"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=worker_env(standin.url, **small), start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        wait_until(
            lambda: ResyncRun.objects.filter(inflight_to__isnull=False, queued__gt=0).count() == 2,
            timeout=60,
            interval=0.01,
            message="both ranges to be under way",
        )
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the command and its lane's process
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    rows = list(ResyncRun.objects.values("status", "inflight_to", "claimed_until"))
    assert rows == [{"status": "interrupted", "inflight_to": None, "claimed_until": None}] * 2  # no mark is left
    assert len(standin.people(SITE)) < 40

    standin.set_faults(Faults())
    call_command("resync", "--connection", str(connection.pk), "-v0")

    run = ResyncRun.objects.get(lane_of=None)
    assert (run.status, ResyncRun.objects.get(lane_of=run).status) == ("done", "done")
    assert len(standin.people(SITE)) == 40
