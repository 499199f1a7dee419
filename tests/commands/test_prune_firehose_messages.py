"""Stored Firehose messages are pruned after FIREHOSE_RETENTION_DAYS; replay protection holds inside the window."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from connections.models import FirehoseMessage
from connections.tasks import prune_firehose_messages_task

pytestmark = pytest.mark.django_db


def message(days_old: float) -> FirehoseMessage:
    stored = FirehoseMessage.objects.create(
        message_id=f"m-{days_old}", message_type="audience_membership_change_request", response={}
    )
    FirehoseMessage.objects.filter(pk=stored.pk).update(received_at=timezone.now() - timedelta(days=days_old))
    return stored


def kept() -> list[str]:
    return sorted(FirehoseMessage.objects.values_list("message_id", flat=True))


def test_the_daily_task_deletes_messages_older_than_the_retention(settings):
    settings.FIREHOSE_RETENTION_DAYS = 30
    for age in (0, 29.9, 30.1, 400):
        message(age)

    assert prune_firehose_messages_task() == 2

    assert kept() == ["m-0", "m-29.9"]


def test_zero_days_keeps_them_forever(settings):
    settings.FIREHOSE_RETENTION_DAYS = 0
    message(4000)

    assert prune_firehose_messages_task() == 0
    assert kept() == ["m-4000"]


def test_beat_runs_the_prune_daily():
    entry = settings.CELERY_BEAT_SCHEDULE["prune-firehose-messages"]
    assert entry["task"] == "connections.tasks.prune_firehose_messages_task"
    assert entry["schedule"].hour == {3}  # a crontab: once a day


def test_the_command_prunes_in_batches_and_says_how_many():
    for age in (1, 10, 11, 12):
        message(age)
    out = StringIO()

    call_command("prune_firehose_messages", "--older-than", "5d", "--batch-size", "2", stdout=out)

    assert kept() == ["m-1"]
    assert "Deleted 3 Firehose messages" in out.getvalue() and "in 2 batches" in out.getvalue()


def test_the_dry_run_counts_and_deletes_nothing():
    message(40)
    out = StringIO()

    call_command("prune_firehose_messages", "--older-than", "30d", "--dry-run", stdout=out)

    assert "Dry run: 1 Firehose messages" in out.getvalue()
    assert kept() == ["m-40"]


def test_a_bad_age_is_refused():
    with pytest.raises(CommandError, match="expected a number of days"):
        call_command("prune_firehose_messages", "--older-than", "soon")
