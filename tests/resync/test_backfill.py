"""Large audiences never cost a request work proportional to their size (issue 16 item 4).

Small ones are handled at once (tests/ingest/test_memberships.py); past BACKFILL_INLINE_MAX
(1,000 by default; 3 here, so that a test needs few rows) the request only records the intent.

A worker then carries the run on: on a v1 connection (these tests) by queueing its members in
the outbox chunk by chunk; on v2 by streaming pages itself (tests/resync/test_streamed_backfill.py).
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from connections.models import Delivery, Forward, ResyncRun, Subscription
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import subscriptions
from connections.services.outbox import wakeup
from connections.services.resync import backfill
from connections.services.resync import runs as resync
from connections.tasks import backfill_audience, sweep
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_inline(settings):
    settings.BACKFILL_INLINE_MAX = 3


def audience_with(members: int, ex_members: int = 0):
    audience = AudienceFactory()
    for _ in range(members):
        MembershipFactory(audience=audience)
    for _ in range(ex_members):
        MembershipFactory(audience=audience, is_member=False)
    return audience


def test_the_default_threshold_is_a_thousand_members(settings):
    assert settings.BACKFILL_INLINE_MAX == 1000


def test_activating_a_large_audience_records_a_run_and_queues_nothing_in_the_request(
    small_inline, django_capture_on_commit_callbacks
):
    audience = audience_with(members=5, ex_members=2)
    connection = ConnectionFactory(transport="v1")

    with django_capture_on_commit_callbacks() as published:
        subscriptions.subscribe(audience, connection)

    assert not Forward.objects.exists()
    run = ResyncRun.objects.get()
    assert (run.reason, run.status, run.total, run.audience) == ("activation", "running", 0, audience)
    assert len(published) == 1  # the task is published once the request commits


def test_the_worker_queues_the_members_only_resumably(small_inline):
    audience = audience_with(members=5, ex_members=2)
    connection = ConnectionFactory(transport="v1")
    subscriptions.subscribe(audience, connection)

    queued = backfill_audience(connection.pk, audience.pk, "activation")

    assert queued == 5
    assert Forward.objects.filter(reason="activation", audience=audience).count() == 5
    run = ResyncRun.objects.get()
    assert (run.status, run.total, run.queued) == ("done", 5, 5)
    assert backfill_audience(connection.pk, audience.pk, "activation") == 0  # nothing left to resume


def test_a_large_rename_backfill_goes_through_a_worker_too(small_inline):
    audience = audience_with(members=4)
    connection = ConnectionFactory(one_attribute_per_audience=True, transport="v1")
    Subscription.objects.create(audience=audience, connection=connection)

    subscriptions.rename_audience(audience, "Renamed")
    assert not Forward.objects.exists()
    backfill_audience(connection.pk, audience.pk, "rename")

    assert Forward.objects.filter(reason="rename").count() == 4


def test_a_backfill_of_a_subscription_deactivated_meanwhile_queues_nothing(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscription, _ = subscriptions.subscribe(audience, connection)
    subscriptions.deactivate(subscription)

    assert backfill_audience(connection.pk, audience.pk, "activation") == 0
    assert not Forward.objects.exists()
    assert ResyncRun.objects.get().status == "done"


def test_deactivating_with_many_queued_rows_leaves_their_cancellation_to_the_worker(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscription, _ = subscriptions.subscribe(audience, connection)
    backfill_audience(connection.pk, audience.pk, "activation")

    subscriptions.deactivate(subscription)

    assert Forward.objects.count() == 5 and not Delivery.objects.exists()
    report = forward_pending(connection.pk)  # nothing is sent: each is cancelled and logged
    assert report.cancelled == 5 and report.requests == 0
    assert Delivery.objects.filter(status="cancelled").count() == 5 and not Forward.objects.exists()


def test_ten_reactivations_keep_one_row_per_member(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscription, _ = subscriptions.subscribe(audience, connection)
    for _ in range(10):
        backfill_audience(connection.pk, audience.pk, "activation")
        subscriptions.deactivate(subscription)
        subscriptions.activate(subscription)
    backfill_audience(connection.pk, audience.pk, "activation")

    assert Forward.objects.count() == 5


def test_a_backfill_of_a_deleted_audience_does_nothing():
    turn = backfill.queue_for(10**9, 10**9, "activation", 1.0)
    assert (turn.run, turn.finished) == (None, True)


# --- resuming a backfill whose task was lost (issue 26 item 5) -------------------------------


def age(run: ResyncRun, seconds: float, **fields) -> None:
    """Make the run look untouched for `seconds` (and set `fields`), as time passing would."""
    ResyncRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds), **fields)


def test_the_sweep_resumes_the_unfinished_backfills_no_worker_holds(small_inline, monkeypatch):
    published = []
    monkeypatch.setattr(
        wakeup, "send_task", lambda name, args, countdown=None, kwargs=None: published.append((name, args)) or True
    )
    lease = settings.FORWARD_CLAIM_SECONDS
    now = timezone.now()
    runs = {}
    for name in ("lost", "fresh", "held", "dead worker", "done", "admin resync"):
        audience, connection = audience_with(members=5), ConnectionFactory(transport="v1")
        subscriptions.subscribe(audience, connection)
        runs[name] = ResyncRun.objects.get(audience=audience)
    age(runs["lost"], lease + 1)  # its task's broker message never came
    age(runs["fresh"], lease - 5)  # its task may still be on its way
    age(runs["held"], lease + 1, claimed_until=now + timedelta(seconds=10))  # a worker is on it
    age(runs["dead worker"], lease + 1, claimed_until=now - timedelta(seconds=1), last_profile_id=7)
    age(runs["done"], lease + 1, status="done")
    age(runs["admin resync"], lease + 1, reason="resync", status="interrupted")  # the admin's to resume

    sweep()

    expected = [runs["lost"], runs["dead worker"]]
    assert sorted(published) == sorted(
        (backfill.BACKFILL_TASK, [run.connection_id, run.audience_id, "activation"]) for run in expected
    )
    published.clear()
    sweep()  # the next sweep gives the published tasks a lease's length before publishing again
    assert published == []


def test_a_resumed_backfill_continues_from_its_checkpoint(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscriptions.subscribe(audience, connection)
    run = ResyncRun.objects.get()
    scope = resync.Scope(connection, audience, (audience.pk,), "activation")
    resync.queue_next_chunk(run, scope, chunk_size=2)  # a worker queued one chunk, then died
    Forward.objects.all().delete()  # and those two were sent meanwhile

    assert backfill_audience(connection.pk, audience.pk, "activation") == 5

    assert Forward.objects.count() == 3  # the three after the checkpoint, not the two again
    assert ResyncRun.objects.get().status == "done"


def test_a_task_finds_the_run_held_by_another_worker_and_leaves_it(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscriptions.subscribe(audience, connection)
    ResyncRun.objects.update(claimed_until=timezone.now() + timedelta(seconds=30))

    assert backfill_audience(connection.pk, audience.pk, "activation") == 0

    assert not Forward.objects.exists()
    assert ResyncRun.objects.get().status == "running"


def test_a_new_backfill_during_an_unfinished_run_queues_every_member_again(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory(transport="v1")
    subscription, _ = subscriptions.subscribe(audience, connection)
    run = ResyncRun.objects.get()
    resync.queue_next_chunk(run, resync.Scope(connection, audience, (audience.pk,), "activation"), chunk_size=2)
    subscriptions.deactivate(subscription)  # before the worker's next turn: the two queued are cancelled
    forward_pending(connection.pk)
    subscriptions.activate(subscription)

    backfill_audience(connection.pk, audience.pk, "activation")

    assert Forward.objects.count() == 5
