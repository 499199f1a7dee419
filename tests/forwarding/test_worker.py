"""Real Celery workers (on Redis in CI) forwarding to the stand-in over real HTTP."""

import os
import time
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.db import connection as db
from django.utils import timezone

from connections.models import Audience, Delivery, Forward, ResyncRun
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.outbox import wakeup
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.timeout(180)]


@pytest.fixture
def connection(standin, workspace_connection):
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="New Users"), connection)
    return connection


def sent_ids(standin):
    ids = Counter()
    for request in standin.requests("site-us"):
        if request.applied:
            ids.update(request.identifiers)
    return ids


def test_a_worker_forwards_a_membership_change_end_to_end(connection, standin):
    with running_workers(standin.url):
        apply_changes([ProfileChange(ProfileInput(customer_id="c1", email="c1@example.com"), {123: True})])
        wait_until(lambda: "c1" in standin.people("site-us"), message="c1 to reach the stand-in")

    assert standin.people("site-us")["c1"] == {"email": "c1@example.com", "SegmentMembership": "'123'"}
    wait_until(lambda: Delivery.objects.filter(status="succeeded").exists(), message="the delivery to be logged")


def test_two_workers_on_one_backlog_send_each_profile_once(connection, standin):
    # The backlog is written before any worker runs, so both start on the same rows.
    apply_changes([ProfileChange(ProfileInput(customer_id=f"c{i}"), {123: True}) for i in range(2000)])
    assert Forward.objects.count() == 2000

    with running_workers(standin.url, count=2, concurrency=2):
        wait_until(lambda: not Forward.objects.exists(), timeout=120, message="the backlog to drain")

    ids = sent_ids(standin)
    assert len(ids) == 2000
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]
    assert Delivery.objects.filter(status="succeeded").count() == 2000


def test_the_sweep_delivers_forwards_whose_broker_message_was_lost(connection, standin):
    apply_changes([ProfileChange(ProfileInput(customer_id="lost"), {123: True})])
    purge_broker()  # the wake-up message is gone; only the outbox row remains
    assert Forward.objects.filter(due_at__lte=timezone.now()).count() == 1

    with running_workers(standin.url, beat=True):  # beat runs the sweep every 30 s, as in production
        wait_until(lambda: "lost" in standin.people("site-us"), timeout=60, message="the swept forward delivered")


def test_the_sweep_finishes_a_large_backfill_whose_broker_message_was_lost(connection, standin, settings):
    """Beat's sweep at its default 30 s resumes the run once it has waited the default lease (45 s)."""
    settings.BACKFILL_INLINE_MAX = 3  # scaffolding (rule 3): five members make the audience "large"
    apply_changes([ProfileChange(ProfileInput(customer_id=f"big{i}"), {777: True}) for i in range(5)])
    audience = Audience.objects.get(audience_id=777)
    subscriptions.subscribe(audience, connection)  # the activation commits and publishes the backfill task
    purge_broker()  # that message is gone; only the run remains
    run = ResyncRun.objects.get(audience=audience)
    assert run.status == "running" and not Forward.objects.filter(audience=audience).exists()

    with running_workers(standin.url, beat=True):  # beat runs the sweep every 30 s, as in production
        wait_until(
            lambda: {f"big{i}" for i in range(5)} <= set(standin.people("site-us")),
            timeout=150,
            message="the backfill to reach the stand-in",
        )

    run.refresh_from_db()
    assert (run.status, run.queued) == ("done", 5)


def test_a_burst_of_changes_all_reach_customer_io_with_a_few_wake_ups(connection, standin, monkeypatch):
    published = []
    send_task = wakeup.send_task

    def recorded(name, args, countdown=None):  # type: ignore[no-untyped-def]
        published.append(countdown)
        return send_task(name, args, countdown)

    monkeypatch.setattr(wakeup, "send_task", recorded)
    with running_workers(standin.url):
        started = time.monotonic()
        for i in range(60):  # 60 commits, as 60 Firehose messages would make
            apply_changes([ProfileChange(ProfileInput(customer_id=f"b{i}"), {123: True})])
        burst = time.monotonic() - started
        wait_until(lambda: len(standin.people("site-us")) == 60, message="all 60 people to reach the stand-in")

    # The default window (0.25 s): the first at once, then at most one per window.
    assert 2 <= len(published) <= burst / django_settings.FORWARD_WAKE_WINDOW_SECONDS + 2, (len(published), burst)
    assert published[0] is None
    assert not Forward.objects.exists()


def database_sessions() -> int:
    """Connections ever opened to the test database (PostgreSQL counts them; a closed one is flushed at exit)."""
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_a_worker_keeps_its_database_connection_from_task_to_task(connection, standin):
    # Celery's Django fix-up would open a new connection for every task (3.8 ms and a forked
    # server process each); the worker keeps one for CONN_MAX_AGE instead, as web requests do.
    with running_workers(standin.url, concurrency=1):
        apply_changes([ProfileChange(ProfileInput(customer_id="warm"), {123: True})])
        wait_until(lambda: "warm" in standin.people("site-us"), message="the first delivery")
        before = database_sessions()
        for i in range(15):  # one change at a time, each delivered before the next: 15 tasks at least
            apply_changes([ProfileChange(ProfileInput(customer_id=f"s{i}"), {123: True})])
            wait_until(lambda i=i: f"s{i}" in standin.people("site-us"), message=f"s{i} to be delivered")
        opened = database_sessions() - before

    assert opened <= 2, f"{opened} database connections opened for 15 tasks"
