"""The forwarding log: read-only, cheap on huge tables, the exact attributes sent, and a retry action."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape
from django.utils.text import Truncator

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


def test_the_list_has_an_error_column_and_times_to_the_second_in_the_browsers_time_zone(
    client, log_viewer, connection
):
    error = "Customer.io rejected the request (HTTP 400): " + "attribute value too long, " * 8
    delivery = make_delivery(connection, ProfileFactory(customer_id="ada"), status=FAILED, http_status=400, error=error)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=datetime(2026, 12, 4, 8, 33, 27, tzinfo=UTC))
    client.cookies["cioaudience_tz"] = "Asia/Kolkata"  # UTC+05:30, as the admin's pages set it
    client.force_login(log_viewer)

    response = client.get(CHANGELIST)

    html = response.content.decode()
    headers = [str(header["text"]) for header in response.context["result_headers"]]
    assert headers == ["time", "connection", "customer ID", "status", "HTTP", "request", "error"]
    assert ">2026-12-04 14:03:27<" in html
    assert "Times are in Asia/Kolkata." in html
    assert "1 delivery\n" in html
    shown = Truncator(error).chars(80)
    assert f'<td class="field-error_short">{escape(shown)}</td>' in html
    assert shown.endswith("…") and escape(error) not in html  # the whole error is on the row's page
    page = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()
    assert escape(error) in page
    assert "2026-12-04 14:03:27" in page


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


def searched(client, term: str) -> list[Delivery]:  # type: ignore[no-untyped-def]
    return list(client.get(CHANGELIST, {"q": term}).context["cl"].result_list)


def test_the_log_is_searched_by_customer_id_prefix(client, log_viewer, connection):
    one = make_delivery(connection, ProfileFactory(customer_id="cust-1"))
    ten = make_delivery(connection, ProfileFactory(customer_id="cust-10"))
    make_delivery(connection, ProfileFactory(customer_id="acust-1"))
    client.force_login(log_viewer)

    assert searched(client, "cust-1") == [ten, one]
    assert searched(client, " cust-10 ") == [ten]
    assert searched(client, "cust_") == []  # LIKE's wildcards are taken literally
    assert searched(client, "%") == []


def test_the_log_is_searched_by_a_persons_email_in_any_case(client, log_viewer, connection):
    ada = ProfileFactory(customer_id="ada", email="Ada@Example.com")
    first = make_delivery(connection, ada)
    second = make_delivery(ConnectionFactory(), ada, status=FAILED)
    make_delivery(connection, ProfileFactory(customer_id="grace", email="grace@example.com"))
    client.force_login(log_viewer)

    assert searched(client, "ada@example.COM") == [second, first]
    assert searched(client, "ada@example") == []  # the whole address, not a part
    assert searched(client, "nobody@example.com") == []


def test_the_search_box_says_what_it_searches(client, log_viewer, connection):
    client.force_login(log_viewer)

    html = client.get(CHANGELIST).content.decode()

    assert "A customer ID or its beginning, or a person&#x27;s exact email address (any case)." in html


@pytest.mark.skipif(db.vendor != "postgresql", reason="PostgreSQL's plans")
@pytest.mark.parametrize(
    ("lookup", "index"),
    [
        ({"customer_id__startswith": "cust-"}, "delivery_customer_prefix"),
        ({"customer_id": "cust-1"}, "delivery_customer_prefix"),  # the erasure's lookups
    ],
)
def test_the_customer_id_search_can_use_an_index_on_postgresql(connection, lookup, index):
    """Under a collation other than "C" (C.UTF-8 here), LIKE 'x%' needs the pattern operator class."""
    with db.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: otherwise a scan is cheaper
        plan = Delivery.objects.filter(**lookup).explain()
        cursor.execute("SET LOCAL enable_seqscan = on")

    # The index bounds the scan ("Index Cond"); a plain index could only be read whole and filtered.
    assert re.search(rf"(Scan using|Index Scan on) {index}[^\n]*\n\s+Index Cond: [^\n]*customer_id", plan), plan


def test_the_log_list_runs_as_many_queries_for_30_rows_as_for_3(client, log_viewer, connection):
    """Each failed row links to its later success and each retry back (log_view): no query per row,
    and the links are worked out for the page shown only, never in the list's count."""

    def page_queries(**filters: str) -> list[str]:
        with CaptureQueriesContext(db) as captured:
            response = client.get(CHANGELIST, filters)
        assert response.status_code == 200
        return [query["sql"] for query in captured]

    def add_retried_people(count: int) -> None:
        for _ in range(count):
            profile = ProfileFactory()
            make_delivery(connection, profile, status=FAILED, http_status=400, error="rejected")
            make_delivery(connection, profile, reason=Forward.Reason.RETRY)

    client.force_login(log_viewer)
    add_retried_people(2)
    few = len(page_queries())
    add_retried_people(13)
    html = client.get(CHANGELIST).content.decode()

    assert html.count("Retried: delivered at") == 15 and html.count("Retry of the attempt at") == 15
    assert len(page_queries()) == few <= 12
    filtered = page_queries(status__exact="failed")  # a filtered list counts its rows (up to the cap)
    assert sum("later_success_id" in sql for sql in filtered) == 1
    assert any(sql.startswith("SELECT COUNT(*)") for sql in filtered)


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
