"""The forwarding log: read-only, cheap on huge tables, the exact attributes sent, and a retry action."""

from __future__ import annotations

import json

import pytest
from django.db import connection as db
from django.utils.html import escape

from connections.admin import common
from connections.admin.common import CheapCountPaginator, estimated_row_count
from connections.models import Delivery, Forward
from tests.support.admin import admin_url, make_delivery
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

CHANGELIST = admin_url(Delivery, "changelist")
FAILED = Delivery.Status.FAILED


@pytest.fixture
def connection(db):
    return ConnectionFactory()


def retry(client, *deliveries: Delivery):  # type: ignore[no-untyped-def]
    return client.post(
        CHANGELIST, {"action": "retry_selected", "_selected_action": [d.pk for d in deliveries]}, follow=True
    )


def action_names(response) -> set[str]:  # type: ignore[no-untyped-def]
    form = response.context["action_form"]  # None when the user has no action at all
    if form is None:
        return set()
    return {name for name, _label in form.fields["action"].choices if name}


def test_retrying_queues_a_forward_for_each_failed_or_cancelled_profile(client, marketer, connection):
    failed = make_delivery(connection, ProfileFactory(), status=FAILED, http_status=500)
    cancelled = make_delivery(connection, ProfileFactory(), status=Delivery.Status.CANCELLED, http_status=None)
    succeeded = make_delivery(connection, ProfileFactory())
    again = make_delivery(connection, failed.profile, status=FAILED, http_status=429, attempt=2)
    client.force_login(marketer)

    response = retry(client, failed, cancelled, succeeded, again)

    forwards = Forward.objects.filter(reason=Forward.Reason.RETRY)
    assert sorted(forwards.values_list("connection_id", "profile_id", "audience_id")) == sorted(
        [(connection.pk, failed.profile_id, None), (connection.pk, cancelled.profile_id, None)]
    )
    assert "Queued 2 people" in response.content.decode()


def test_retrying_a_delivery_whose_profile_was_deleted_queues_nothing(client, superuser, connection):
    orphan = make_delivery(connection, None, status=FAILED, customer_id="gone")
    client.force_login(superuser)

    response = retry(client, orphan)

    assert Forward.objects.count() == 0
    assert "Nothing to retry" in response.content.decode()


def test_log_viewers_get_no_retry_action(client, log_viewer, connection):
    failed = make_delivery(connection, ProfileFactory(), status=FAILED)
    client.force_login(log_viewer)

    page = client.get(CHANGELIST)
    retry(client, failed)

    assert "retry_selected" not in action_names(page)
    assert Forward.objects.count() == 0


def test_marketers_and_superusers_get_the_retry_action_but_no_delete(client, marketer, superuser, connection):
    make_delivery(connection, ProfileFactory())
    for user in (marketer, superuser):
        client.force_login(user)
        assert action_names(client.get(CHANGELIST)) == {"retry_selected"}


def test_the_detail_page_shows_the_attributes_sent_the_response_and_the_error(client, log_viewer, connection):
    attributes = {"email": "ada@example.com", "SegmentMembership": "'123','456'", "In Café ☕": "true"}
    delivery = make_delivery(
        connection,
        ProfileFactory(),
        status=FAILED,
        http_status=400,
        attributes=attributes,
        response='{"meta":{"error":"attribute too long"}}',
        error="Customer.io refused it: attribute too long",
    )
    client.force_login(log_viewer)

    response = client.get(admin_url(Delivery, "change", delivery.pk))

    html = response.content.decode()
    assert response.status_code == 200
    assert escape(json.dumps(attributes, indent=2, ensure_ascii=False, sort_keys=True)) in html
    assert escape('{"meta":{"error":"attribute too long"}}') in html
    assert "Customer.io refused it: attribute too long" in html
    assert 'name="_save"' not in html  # read-only


@pytest.mark.parametrize(("value", "expected"), [("429", [429]), ("200", [200]), ("none", [None])])
def test_the_log_is_filtered_by_http_status(client, log_viewer, connection, value, expected):
    for status in (200, 429, None):
        make_delivery(connection, ProfileFactory(), http_status=status)
    client.force_login(log_viewer)

    rows = client.get(CHANGELIST, {"http": value}).context["cl"].result_list

    assert [d.http_status for d in rows] == expected


def test_the_log_is_filtered_by_connection_status_and_date(client, log_viewer, connection):
    wanted = make_delivery(connection, ProfileFactory(), status=FAILED)
    make_delivery(connection, ProfileFactory())
    make_delivery(ConnectionFactory(), ProfileFactory(), status=FAILED)
    client.force_login(log_viewer)

    response = client.get(
        CHANGELIST, {"connection__id__exact": connection.pk, "status__exact": "failed", "created_at__gte": "2000-01-01"}
    )

    assert list(response.context["cl"].result_list) == [wanted]


def test_the_log_is_searched_by_exact_customer_id(client, log_viewer, connection):
    wanted = make_delivery(connection, ProfileFactory(customer_id="cust-1"))
    make_delivery(connection, ProfileFactory(customer_id="cust-10"))
    client.force_login(log_viewer)

    rows = client.get(CHANGELIST, {"q": "cust-1"}).context["cl"].result_list

    assert list(rows) == [wanted]


def test_the_log_list_runs_a_bounded_number_of_queries(client, log_viewer, connection, django_assert_max_num_queries):
    for _ in range(30):
        make_delivery(connection, ProfileFactory())
    client.force_login(log_viewer)

    with django_assert_max_num_queries(12):
        assert client.get(CHANGELIST).status_code == 200


def test_counts_stop_at_the_cap_on_filtered_lists(connection, monkeypatch):
    monkeypatch.setattr(common, "COUNT_CAP", 3)
    for _ in range(5):
        make_delivery(connection, ProfileFactory())

    paginator = CheapCountPaginator(Delivery.objects.filter(status="succeeded").order_by("-pk"), 2)

    assert paginator.count == 3
    assert paginator.is_capped


def test_small_lists_are_counted_exactly(connection):
    for _ in range(5):
        make_delivery(connection, ProfileFactory())

    paginator = CheapCountPaginator(Delivery.objects.order_by("-pk"), 2)

    assert paginator.count == 5
    assert not paginator.is_capped and not paginator.is_estimate


def test_large_unfiltered_lists_use_postgresqls_estimate(connection, monkeypatch):
    monkeypatch.setattr(common, "COUNT_CAP", 3)
    for _ in range(5):
        make_delivery(connection, ProfileFactory())
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("ANALYZE connections_delivery")

    paginator = CheapCountPaginator(Delivery.objects.order_by("-pk"), 2)

    if db.vendor == "postgresql":
        assert estimated_row_count(Delivery, "default") == 5
        assert paginator.count == 5 and paginator.is_estimate
    else:  # no estimate elsewhere: the capped count
        assert estimated_row_count(Delivery, "default") is None
        assert paginator.count == 3 and paginator.is_capped


def test_the_log_never_offers_per_filter_counts(client, log_viewer, connection):
    make_delivery(connection, ProfileFactory())
    client.force_login(log_viewer)

    response = client.get(CHANGELIST, {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in response.content.decode()
    assert not response.context["cl"].add_facets
