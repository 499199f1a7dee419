"""The batch log's months: partitions made ahead, whole months dropped past retention, the rest by date."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone

from connections.models import BatchDelivery, Delivery
from connections.services.erasure import partitions
from connections.services.erasure.partitions import MonthPartition
from connections.tasks import make_batch_log_partitions, prune_deliveries_task
from tests.support.batch_log import log_identify
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif("db.vendor != 'postgresql'")


def request_at(connection, profiles, moment):
    ref = log_identify(connection, profiles)
    # On PostgreSQL the update moves the row into the partition of its new month.
    BatchDelivery.objects.filter(id=ref.id).update(created_at=moment)
    return ref.id


def partition_of(row_id):
    with db.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM connections_batchdelivery WHERE id = %s", [row_id])
        (name,) = cursor.fetchone()
    return name


def names(found):
    return [p.name for p in found]


def test_a_month_runs_from_its_first_instant_to_the_next_months_in_utc():
    december = MonthPartition.containing(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert (december.name, december.start, december.end) == (
        "connections_batchdelivery_2026_12",
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert december.next().name == "connections_batchdelivery_2027_01"


@on_postgresql
def test_the_migration_made_this_month_and_the_next_and_a_default():
    this_month = MonthPartition.containing(timezone.now())
    assert names(partitions.month_partitions())[:2] == [this_month.name, this_month.next().name]
    with db.cursor() as cursor:
        cursor.execute("SELECT to_regclass('connections_batchdelivery_default') IS NOT NULL")
        assert cursor.fetchone() == (True,)


@on_postgresql
def test_the_daily_task_makes_the_months_ahead_once():
    made = make_batch_log_partitions()
    this_month = MonthPartition.containing(timezone.now())
    two_ahead = this_month.next().next()
    assert made == [two_ahead.name]  # this month and the next were made by the migration
    assert make_batch_log_partitions() == []
    assert two_ahead.name in names(partitions.month_partitions())


@on_postgresql
def test_a_month_without_a_partition_still_takes_writes_and_its_partition_takes_them_in():
    connection, profiles = ConnectionFactory(), ProfileFactory.create_batch(2)
    far = datetime(2031, 5, 10, tzinfo=UTC)
    row_id = request_at(connection, profiles, far)
    assert partition_of(row_id) == "connections_batchdelivery_default"

    made = partitions.ensure_month_partitions(now=far, months_ahead=0)

    assert made == ["connections_batchdelivery_2031_05"]
    assert partition_of(row_id) == "connections_batchdelivery_2031_05"
    row = BatchDelivery.objects.get(pk=row_id)
    assert row.profile_ids == [p.pk for p in profiles] and row.created_at == far


@pytest.fixture
def dated_rows(settings):
    """Rows in three past months, retention cutting the previous month in its middle."""
    now = timezone.now()
    previous = MonthPartition.containing(now).start - timedelta(days=1)
    previous = MonthPartition.containing(previous)
    before_previous = MonthPartition.containing(previous.start - timedelta(days=1))
    third = MonthPartition.containing(before_previous.start - timedelta(days=1))
    partitions.ensure_month_partitions(now=before_previous.start, months_ahead=1)  # not the third: DEFAULT
    cutoff = previous.start + timedelta(days=15)
    settings.DELIVERY_RETENTION_DAYS = (now - cutoff).days
    connection, profiles = ConnectionFactory(), ProfileFactory.create_batch(2)
    at = {
        "in default, old": third.start + timedelta(days=3),
        "whole month past": before_previous.start + timedelta(days=10),
        "cut month, before": previous.start + timedelta(days=5),
        "cut month, after": previous.start + timedelta(days=25),
        "now": now,
    }
    rows = {label: request_at(connection, profiles, moment) for label, moment in at.items()}
    return rows, before_previous


def test_retention_drops_whole_months_and_deletes_the_rest_by_date(dated_rows):
    rows, before_previous = dated_rows
    Delivery.objects.create(connection=ConnectionFactory(), customer_id="c1", status="succeeded")

    prune_deliveries_task()

    kept = set(BatchDelivery.objects.values_list("pk", flat=True))
    assert kept == {rows["cut month, after"], rows["now"]}
    assert Delivery.objects.count() == 1  # the forwarding log's own rows keep their age
    if db.vendor == "postgresql":
        assert before_previous.name not in names(partitions.month_partitions())
        assert partition_of(rows["cut month, after"]) == before_previous.next().name


def test_the_command_says_what_went_and_which_months_were_dropped(dated_rows, settings):
    _, before_previous = dated_rows
    out = StringIO()
    call_command("prune_deliveries", "--older-than", f"{settings.DELIVERY_RETENTION_DAYS}d", "--dry-run", stdout=out)
    assert "Dry run: 3 batch requests created before" in out.getvalue()

    out = StringIO()
    call_command("prune_deliveries", "--older-than", f"{settings.DELIVERY_RETENTION_DAYS}d", stdout=out)

    assert "Deleted 3 batch requests created before" in out.getvalue()
    if db.vendor == "postgresql":
        assert f"Dropped whole months: {before_previous.name}." in out.getvalue()
    assert BatchDelivery.objects.count() == 2


def test_retention_zero_keeps_every_request(dated_rows, settings):
    settings.DELIVERY_RETENTION_DAYS = 0
    prune_deliveries_task()
    assert BatchDelivery.objects.count() == 5


@pytest.fixture
def busy_table():
    """Another session reading the batch log (ACCESS SHARE held), as a long admin query would."""
    import psycopg

    params = db.get_connection_params()
    reader = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")})
    reader.execute("BEGIN")
    reader.execute("LOCK TABLE connections_batchdelivery IN ACCESS SHARE MODE")
    yield
    reader.rollback()
    reader.close()


@on_postgresql
def test_a_busy_table_delays_a_months_drop_to_the_next_run_instead_of_queueing_writers(monkeypatch, busy_table):
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "100ms")
    before = names(partitions.month_partitions())

    assert partitions.drop_month_partitions_before(datetime(2100, 1, 1, tzinfo=UTC)) == []
    assert partitions.ensure_month_partitions(now=datetime(2040, 1, 1, tzinfo=UTC), months_ahead=0) == []
    assert names(partitions.month_partitions()) == before


@on_postgresql
def test_a_partition_added_by_hand_is_left_alone():
    with db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE batch_archive_2001 PARTITION OF connections_batchdelivery"
            " FOR VALUES FROM ('2001-01-01') TO ('2002-01-01')"
        )
    assert "batch_archive_2001" not in names(partitions.month_partitions())
    assert partitions.drop_month_partitions_before(datetime(2003, 1, 1, tzinfo=UTC)) == []
