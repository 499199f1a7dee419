"""Replay protection covers the retention window: a replayed id inside it changes nothing; after the prune it is new."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import FirehoseMessage, Membership
from connections.tasks import prune_firehose_messages_task
from tests.support.firehose import audience, membership_request, user_profile

pytestmark = pytest.mark.django_db


def test_a_replay_inside_the_window_changes_nothing_and_after_the_prune_applies_again(post, settings):
    settings.FIREHOSE_RETENTION_DAYS = 30
    join = membership_request(user_profile("c1", audiences=[audience(1, "add")]))
    assert post(join).status_code == 200
    post(membership_request(user_profile("c1", audiences=[audience(1, "delete")])))
    FirehoseMessage.objects.update(received_at=timezone.now() - timedelta(days=29))

    prune_firehose_messages_task()
    assert post(join).status_code == 200  # 29 days on: still a replay

    assert not Membership.objects.get().is_member
    FirehoseMessage.objects.update(received_at=timezone.now() - timedelta(days=31))
    prune_firehose_messages_task()
    assert post(join).status_code == 200  # past the window: a new message
    assert Membership.objects.get().is_member
