"""When a forwarding task comes back by itself, and when it leaves the rest to the sweep."""

import pytest
from django.utils import timezone

from cio_standin import Faults
from connections.models import Forward
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.tasks import forward_connection
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch):
    """The follow-ups a task asks the broker for (the broker itself is not the point here)."""
    calls = []
    monkeypatch.setattr(forward_connection, "apply_async", lambda args, countdown: calls.append((args, countdown)))
    return calls


@pytest.fixture
def connection(standin, workspace_connection, settings):
    connection = workspace_connection("site-us")
    subscriptions.subscribe(AudienceFactory(audience_id=1, name="A"), connection)
    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {1: True})])
    # A change that has waited out a flood's hold (tested in test_flood_hold.py): sent when the task runs.
    Forward.objects.update(due_at=timezone.now() - timezone.timedelta(seconds=settings.FORWARD_HOLD_MAX_SECONDS))
    return connection


def test_a_task_that_sent_nothing_does_not_reschedule_itself(connection, scheduled):
    Forward.objects.update(due_at=timezone.now() + timezone.timedelta(seconds=5))  # all in backoff

    forward_connection(connection.pk)

    assert scheduled == []


def test_a_task_comes_back_for_a_retry_due_before_the_next_sweep(connection, standin, scheduled, settings):
    settings.FORWARD_BACKOFF_BASE = 1.0
    standin.set_faults(Faults(share=1.0, statuses=(503,), retry_after=None))

    forward_connection(connection.pk)

    ((args, countdown),) = scheduled
    assert args == (connection.pk,) and 0 < countdown <= settings.SWEEP_INTERVAL_SECONDS


def test_a_retry_due_after_the_next_sweep_is_left_to_the_sweep(connection, standin, scheduled, settings):
    settings.FORWARD_BACKOFF_BASE = 120.0
    standin.set_faults(Faults(share=1.0, statuses=(503,), retry_after=None))

    forward_connection(connection.pk)

    assert scheduled == []
