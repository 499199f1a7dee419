"""Out-of-order messages (issue 16, item 5): a change older than the stored one is ignored.

The rule: each membership keeps the source time of the change applied last (the message's
`timestamp_ms`); a change stamped earlier arrived late and is ignored; the same time is applied
(the last writer wins); admin and import edits count as "now"; a time ahead of the server's
clock counts as now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from connections.models import Forward, Membership
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory, SubscriptionFactory
from tests.support.firehose import audience, membership_request, user_profile

pytestmark = pytest.mark.django_db

T = 1_714_592_744_065  # mParticle's sample timestamp (ms)


def change(action: str, timestamp_ms: int, customer_id: str = "c1") -> dict:
    message = membership_request(user_profile(customer_id, audiences=[audience(1, action)]))
    message["timestamp_ms"] = timestamp_ms
    return message


def is_member(customer_id: str = "c1") -> bool:
    return Membership.objects.get(profile__customer_id=customer_id, audience__audience_id=1).is_member


@pytest.fixture
def subscription():
    return SubscriptionFactory(audience=AudienceFactory(audience_id=1))


def test_an_older_add_arriving_after_a_newer_delete_does_not_win(post, subscription):
    assert post(change("add", T)).status_code == 200
    assert post(change("delete", T + 2000)).status_code == 200
    Forward.objects.all().delete()  # what a worker does once it has sent them

    late = post(change("add", T + 1000))  # sent before the delete, delivered after it

    assert late.status_code == 200  # accepted (mParticle must not retry it), but it changes nothing
    assert is_member() is False
    assert Forward.objects.count() == 0
    stored = Membership.objects.get(profile__customer_id="c1")
    assert stored.source_time == datetime.fromtimestamp((T + 2000) / 1000, tz=UTC)


def test_the_same_timestamp_is_applied_last_writer_wins(post, subscription):
    post(change("add", T))
    post(change("delete", T))

    assert is_member() is False


def test_a_repeated_state_moves_the_stored_time_forward(post, subscription):
    post(change("add", T))
    post(change("add", T + 3000))  # no change of state, but newer
    post(change("delete", T + 2000))  # older than the repeated add: ignored

    assert is_member() is True


def test_a_newer_change_after_an_older_one_is_applied(post, subscription):
    post(change("delete", T + 1000))
    post(change("add", T + 5000))

    assert is_member() is True
    assert Forward.objects.filter(reason="membership").count() == 1


def test_an_import_or_admin_edit_counts_as_now(post, subscription):
    post(change("add", T))
    # The import and the admin go through apply_changes without a source time.
    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {1: False})])
    stored = Membership.objects.get(profile__customer_id="c1")
    assert stored.source_time is not None and timezone.now() - stored.source_time < timedelta(minutes=1)

    post(change("add", T + 1000))  # stamped long before the edit

    assert is_member() is False


def test_a_timestamp_ahead_of_the_clock_counts_as_now(post, subscription):
    tomorrow = int((time.time() + 86_400) * 1000)
    post(change("add", tomorrow))
    stored = Membership.objects.get(profile__customer_id="c1")
    assert stored.source_time <= timezone.now()

    post(change("delete", int(time.time() * 1000) + 50))  # a message that really is later

    assert is_member() is False


def test_only_the_late_membership_of_a_message_is_ignored(post, subscription):
    AudienceFactory(audience_id=2)
    post(change("delete", T + 2000))

    message = membership_request(user_profile("c1", audiences=[audience(1, "add"), audience(2, "add")]))
    message["timestamp_ms"] = T + 1000
    post(message)

    assert is_member() is False  # audience 1 changed later than this message
    assert Membership.objects.get(profile__customer_id="c1", audience__audience_id=2).is_member is True


def test_a_timestamp_beyond_any_date_counts_as_now(post, subscription):
    post(change("add", T))

    response = post(change("delete", 10**17))  # year 3.1 million: not a date Python can hold

    assert response.status_code == 200
    assert is_member() is False
    assert timezone.now() - Membership.objects.get(profile__customer_id="c1").source_time < timedelta(minutes=1)
