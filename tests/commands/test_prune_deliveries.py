"""`manage.py prune_deliveries` and the daily task: old forwarding-log rows go, in small batches."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from connections.models import Delivery
from connections.services.erasure.retention import parse_age
from connections.tasks import prune_deliveries_task
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def log_rows(connection, *ages):
    """One delivery per age (a timedelta ago), returned in the same order."""
    now = timezone.now()
    rows = []
    for age in ages:
        row = Delivery.objects.create(connection=connection, customer_id=f"c{len(rows)}", status="succeeded")
        Delivery.objects.filter(pk=row.pk).update(created_at=now - age)
        rows.append(row)
    return rows


def prune(*args):
    out = StringIO()
    call_command("prune_deliveries", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def log(db):
    connection = ConnectionFactory()
    days = [timedelta(days=d) for d in (45, 40, 31, 29, 1)]
    return log_rows(connection, *days)


def test_it_deletes_rows_older_than_the_age_in_batches(log):
    out = prune("--older-than", "30d", "--batch-size", "2")

    assert set(Delivery.objects.values_list("pk", flat=True)) == {log[3].pk, log[4].pk}
    assert "Deleted 3 deliveries created before" in out and "in 2 batches" in out


def test_dry_run_only_counts(log):
    out = prune("--older-than", "30d", "--dry-run")

    assert "Dry run: 3 deliveries created before" in out and "Nothing was deleted." in out
    assert Delivery.objects.count() == 5


@pytest.mark.parametrize(
    ("text", "age"), [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))]
)
def test_ages_are_days_hours_or_minutes(text, age):
    assert parse_age(text) == age


def test_hours_and_minutes_work_too(db):
    connection = ConnectionFactory()
    _, recent = log_rows(connection, timedelta(hours=13), timedelta(minutes=80))

    prune("--older-than", "12h")
    assert list(Delivery.objects.values_list("pk", flat=True)) == [recent.pk]
    prune("--older-than", "90m")
    assert Delivery.objects.count() == 1
    prune("--older-than", "60m")
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("bad", ["30", "30x", "d", "-5d", "1.5d", "0d", ""])
def test_a_bad_age_is_a_clear_error(db, bad):
    with pytest.raises(CommandError, match="argument --older-than: "):
        prune("--older-than", bad)


def test_a_bad_batch_size_is_a_clear_error(db):
    with pytest.raises(CommandError, match="argument --batch-size: must be 1 or more"):
        prune("--older-than", "30d", "--batch-size", "0")


def test_the_daily_task_keeps_delivery_retention_days(log, settings):
    settings.DELIVERY_RETENTION_DAYS = 35

    assert prune_deliveries_task() == 2
    assert Delivery.objects.count() == 3


def test_retention_zero_keeps_everything(log, settings):
    settings.DELIVERY_RETENTION_DAYS = 0
    assert prune_deliveries_task() == 0 and Delivery.objects.count() == 5


def test_beat_runs_the_task_daily():
    entry = django_settings.CELERY_BEAT_SCHEDULE["prune-deliveries"]
    assert entry["task"] == "connections.tasks.prune_deliveries_task"
    assert entry["schedule"].remaining_estimate(timezone.now()) <= timedelta(days=1)
