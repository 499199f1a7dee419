"""Real Celery workers (on Redis in CI) forwarding to the stand-in over real HTTP."""

from collections import Counter

import pytest
from django.utils import timezone

from connections.models import Delivery, Forward
from connections.services import subscriptions
from connections.services.memberships import ProfileChange, ProfileInput, apply_changes
from tests.factories import AudienceFactory
from tests.workers import purge_broker, running_workers, wait_until

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
