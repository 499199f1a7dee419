"""Large audiences never cost a request work proportional to their size (issue 16 item 4).

Small ones are handled at once (tests/services/test_memberships.py); past BACKFILL_INLINE_MAX
(1,000 by default; 3 here, so that a test needs few rows) the request only records the intent.
"""

import pytest

from connections.models import Delivery, Forward, ResyncRun, Subscription
from connections.services import backfill, subscriptions
from connections.services.forwarding import forward_pending
from connections.tasks import backfill_audience
from tests.factories import AudienceFactory, ConnectionFactory, MembershipFactory

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
    connection = ConnectionFactory()

    with django_capture_on_commit_callbacks() as published:
        subscriptions.subscribe(audience, connection)

    assert not Forward.objects.exists()
    run = ResyncRun.objects.get()
    assert (run.reason, run.status, run.total, run.audience) == ("activation", "running", 0, audience)
    assert len(published) == 1  # the task is published once the request commits


def test_the_worker_queues_the_members_only_resumably(small_inline):
    audience = audience_with(members=5, ex_members=2)
    connection = ConnectionFactory()
    subscriptions.subscribe(audience, connection)

    queued = backfill_audience(connection.pk, audience.pk, "activation")

    assert queued == 5
    assert Forward.objects.filter(reason="activation", audience=audience).count() == 5
    run = ResyncRun.objects.get()
    assert (run.status, run.total, run.queued) == ("done", 5, 5)
    assert backfill_audience(connection.pk, audience.pk, "activation") == 0  # nothing left to resume


def test_a_large_rename_backfill_goes_through_a_worker_too(small_inline):
    audience = audience_with(members=4)
    connection = ConnectionFactory(one_attribute_per_audience=True)
    Subscription.objects.create(audience=audience, connection=connection)

    subscriptions.rename_audience(audience, "Renamed")
    assert not Forward.objects.exists()
    backfill_audience(connection.pk, audience.pk, "rename")

    assert Forward.objects.filter(reason="rename").count() == 4


def test_a_backfill_of_a_subscription_deactivated_meanwhile_queues_nothing(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory()
    subscription, _ = subscriptions.subscribe(audience, connection)
    subscriptions.deactivate(subscription)

    assert backfill_audience(connection.pk, audience.pk, "activation") == 0
    assert not Forward.objects.exists()
    assert ResyncRun.objects.get().status == "done"


def test_deactivating_with_many_queued_rows_leaves_their_cancellation_to_the_worker(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory()
    subscription, _ = subscriptions.subscribe(audience, connection)
    backfill_audience(connection.pk, audience.pk, "activation")

    subscriptions.deactivate(subscription)

    assert Forward.objects.count() == 5 and not Delivery.objects.exists()
    report = forward_pending(connection.pk)  # nothing is sent: each is cancelled and logged
    assert report.cancelled == 5 and report.requests == 0
    assert Delivery.objects.filter(status="cancelled").count() == 5 and not Forward.objects.exists()


def test_ten_reactivations_keep_one_row_per_member(small_inline):
    audience = audience_with(members=5)
    connection = ConnectionFactory()
    subscription, _ = subscriptions.subscribe(audience, connection)
    for _ in range(10):
        backfill_audience(connection.pk, audience.pk, "activation")
        subscriptions.deactivate(subscription)
        subscriptions.activate(subscription)
    backfill_audience(connection.pk, audience.pk, "activation")

    assert Forward.objects.count() == 5


def test_a_backfill_of_a_deleted_audience_does_nothing():
    assert backfill.queue_for(10**9, 10**9, "activation", 1.0) == (None, True)
