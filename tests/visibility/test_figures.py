"""The numbers of a connection's health: each one aggregate query, bounded where it could be huge."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from connections.models import Delivery, Forward
from connections.services.visibility import figures
from tests.support.admin import make_delivery, make_forward
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 29, 12, 30, tzinfo=UTC)


def delivery_at(connection, when: datetime, status: str = Delivery.Status.SUCCEEDED) -> None:
    delivery = make_delivery(connection, status=status)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=when)


def test_deliveries_per_hour_fills_every_hour_and_counts_in_a_query_per_log(django_assert_num_queries):
    connection = ConnectionFactory()
    delivery_at(connection, NOW - timedelta(minutes=10))
    delivery_at(connection, NOW - timedelta(minutes=20), Delivery.Status.FAILED)
    delivery_at(connection, NOW - timedelta(hours=47, minutes=30))  # 13:00 two days ago: the first hour
    delivery_at(connection, NOW - timedelta(hours=48, minutes=31))  # before the window

    with django_assert_num_queries(2):  # the forwarding log, the batch log
        hours = figures.deliveries_per_hour(connection.pk, now=NOW)

    assert len(hours) == 48
    assert hours[0].start == datetime(2026, 3, 27, 13, 0, tzinfo=UTC)
    assert hours[-1].start == datetime(2026, 3, 29, 12, 0, tzinfo=UTC) and hours[-1].is_current
    assert hours[-1].outcomes == figures.DeliveryCounts(succeeded=1, failed=1)
    assert hours[0].outcomes == figures.DeliveryCounts(succeeded=1, failed=0)
    assert hours[1].outcomes == figures.DeliveryCounts(succeeded=0, failed=0)
    assert sum(h.outcomes.attempts for h in hours) == 3


def test_the_chart_counts_the_people_of_streamed_requests(db):
    """An activation's or a resync's batch requests count as their people: accepted, or a failed attempt."""
    from connections.customerio.client import Outcome
    from connections.models import BatchDelivery
    from connections.services.forwarding.batch_log import complete_batch
    from tests.support.batch_log import log_identify, log_segment_add, result

    connection = ConnectionFactory()
    people = ProfileFactory.create_batch(3)
    complete_batch(log_identify(connection, people), result(Outcome.SUCCEEDED, 207), {1: "bad email"})
    complete_batch(log_identify(connection, people[:2]), result(Outcome.RETRY, 503), {})
    complete_batch(log_segment_add(connection, people), result(Outcome.SUCCEEDED), {})  # the same people again
    BatchDelivery.objects.update(created_at=NOW - timedelta(minutes=5))

    hours = figures.deliveries_per_hour(connection.pk, now=NOW)

    assert hours[-1].outcomes == figures.DeliveryCounts(succeeded=2, failed=1 + 2)
    assert figures.recent_outcomes([connection.pk], now=NOW)[connection.pk] == hours[-1].outcomes


def test_recent_outcomes_of_many_connections_in_a_query_per_log(django_assert_num_queries):
    busy, quiet = ConnectionFactory(), ConnectionFactory()
    now = timezone.now()
    delivery_at(busy, now - timedelta(hours=1))
    delivery_at(busy, now - timedelta(hours=2), Delivery.Status.FAILED)
    delivery_at(busy, now - timedelta(hours=2), Delivery.Status.CANCELLED)
    delivery_at(busy, now - timedelta(hours=25), Delivery.Status.FAILED)

    with django_assert_num_queries(2):  # the forwarding log, the batch log
        outcomes = figures.recent_outcomes([busy.pk, quiet.pk])

    assert outcomes == {busy.pk: figures.DeliveryCounts(succeeded=1, failed=1)}
    assert outcomes[busy.pk].failure_rate == 0.5
    assert figures.DeliveryCounts().failure_rate is None


def test_a_bounded_count_stops_at_its_cap():
    connection = ConnectionFactory()
    for profile in ProfileFactory.create_batch(4):
        make_forward(connection, profile)

    assert figures.bounded_count(Forward.objects.all(), cap=3) == figures.BoundedCount(3, capped=True)
    assert str(figures.bounded_count(Forward.objects.all(), cap=3)) == "3+"
    assert figures.bounded_count(Forward.objects.all(), cap=4) == figures.BoundedCount(4)
    backlog = figures.backlogs([connection.pk])[connection.pk]
    assert backlog.count == figures.BoundedCount(4)
    assert backlog.oldest == Forward.objects.earliest("created_at").created_at
