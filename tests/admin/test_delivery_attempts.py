"""The attempts of one delivery are linked in the log, and a failed or cancelled one is retried from its page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils.html import escape

from connections.models import Delivery, Forward
from tests.support.admin import admin_url, make_delivery
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

CHANGELIST = admin_url(Delivery, "changelist")
FAILED, RETRYING, SUCCEEDED = Delivery.Status.FAILED, Delivery.Status.RETRYING, Delivery.Status.SUCCEEDED
START = datetime(2026, 12, 4, 14, 3, 27, tzinfo=UTC)


@pytest.fixture
def connection(db):
    return ConnectionFactory()


@pytest.fixture
def ada(db):
    return ProfileFactory(customer_id="ada")


def logged(connection, profile, seconds: int, **fields) -> Delivery:  # type: ignore[no-untyped-def]
    """A log row START + `seconds` (shown in UTC: the test client sends no time zone)."""
    delivery = make_delivery(connection, profile, **fields)
    at = START + timedelta(seconds=seconds)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=at, finished_at=at + timedelta(seconds=1))
    delivery.refresh_from_db()
    return delivery


def link(delivery: Delivery, text: str) -> str:
    return f'<a href="{admin_url(Delivery, "change", delivery.pk)}">{escape(text)}</a>'


def status_cell(client: Client, delivery: Delivery) -> str:
    """The status cell of the delivery's row in the list."""
    html = client.get(CHANGELIST).content.decode()
    row = html.split(f'<th class="field-logged_at"><a href="{admin_url(Delivery, "change", delivery.pk)}"', 1)[1]
    row = row.split("</tr>", 1)[0]
    return row.split('<td class="field-outcome">', 1)[1].split("</td>", 1)[0]


def test_a_failed_row_says_when_it_was_retried_successfully_and_the_retry_links_back(
    client, log_viewer, connection, ada
):
    failed = logged(connection, ada, 0, status=FAILED, http_status=400, error="rejected")
    retried = logged(connection, ada, 105, reason=Forward.Reason.RETRY)
    client.force_login(log_viewer)

    assert link(retried, "Retried: delivered at 14:05:13") in status_cell(client, failed)
    assert link(failed, "Retry of the attempt at 14:03:27") in status_cell(client, retried)


def test_transient_failures_link_to_the_attempt_that_got_through(client, log_viewer, connection, ada):
    first = logged(connection, ada, 0, status=RETRYING, http_status=503)
    second = logged(connection, ada, 10, status=RETRYING, http_status=503, attempt=2)
    third = logged(connection, ada, 30, attempt=3)
    client.force_login(log_viewer)

    assert link(third, "Retried: delivered at 14:03:58") in status_cell(client, first)
    cell = status_cell(client, second)
    assert link(third, "Retried: delivered at 14:03:58") in cell
    assert link(first, "Retry of the attempt at 14:03:27") in cell
    assert link(second, "Retry of the attempt at 14:03:37") in status_cell(client, third)
    assert "Retried" not in status_cell(client, third)


def test_a_failure_not_yet_settled_links_to_the_next_attempt(client, log_viewer, connection, ada):
    failed = logged(connection, ada, 0, status=RETRYING, http_status=500)
    again = logged(connection, ada, 20, status=FAILED, http_status=400, attempt=2)
    client.force_login(log_viewer)

    assert link(again, "Tried again at 14:03:47: failed") in status_cell(client, failed)
    assert "Retried" not in status_cell(client, again)


def test_a_later_change_that_got_through_is_named_a_newer_update(client, log_viewer, connection, ada):
    failed = logged(connection, ada, 0, status=FAILED, http_status=400)
    newer = logged(connection, ada, 60, reason=Forward.Reason.MEMBERSHIP)
    client.force_login(log_viewer)

    assert link(newer, "Newer update delivered at 14:04:28") in status_cell(client, failed)
    assert "Retry of" not in status_cell(client, newer)  # a new change, not a retry


def test_a_success_on_another_day_shows_its_date(client, log_viewer, connection, ada):
    failed = logged(connection, ada, 0, status=FAILED, http_status=400)
    retried = logged(connection, ada, 86_400, reason=Forward.Reason.RETRY)
    client.force_login(log_viewer)

    assert link(retried, "Retried: delivered at 2026-12-05 14:03:28") in status_cell(client, failed)


def test_rows_of_another_person_connection_request_or_segment_are_not_linked(client, log_viewer, connection, ada):
    logged(connection, ada, -10)  # an earlier success settles nothing later
    failed = logged(connection, ada, 0, status=FAILED, http_status=400)
    logged(connection, ProfileFactory(), 10, reason=Forward.Reason.RETRY)
    logged(ConnectionFactory(), ada, 20, reason=Forward.Reason.RETRY)
    logged(connection, ada, 30, action="segment_add", segment_id=7, reason=Forward.Reason.RETRY)
    segment = logged(connection, ada, 40, status=FAILED, action="segment_add", segment_id=7)
    logged(connection, ada, 50, action="segment_add", segment_id=8, reason=Forward.Reason.RETRY)
    client.force_login(log_viewer)

    assert "<a " not in status_cell(client, failed)
    assert "<a " not in status_cell(client, segment)


def test_rows_of_a_deleted_or_erased_person_are_not_linked(client, log_viewer, connection):
    gone = logged(connection, None, 0, status=FAILED, customer_id="gone")
    logged(connection, None, 10, reason=Forward.Reason.RETRY, customer_id="gone")
    client.force_login(log_viewer)

    assert "<a " not in status_cell(client, gone)


def test_a_rows_page_lists_the_attempts_of_its_delivery(client, log_viewer, connection, ada):
    logged(connection, ada, -60, http_status=200)  # an earlier delivery, settled
    first = logged(connection, ada, 0, status=RETRYING, http_status=503, error="Customer.io is unavailable")
    second = logged(connection, ada, 10, status=FAILED, http_status=400, attempt=2, error="rejected")
    third = logged(connection, ada, 70, reason=Forward.Reason.RETRY)
    logged(connection, ada, 90)  # a later delivery
    client.force_login(log_viewer)

    html = client.get(admin_url(Delivery, "change", second.pk)).content.decode()

    attempts = html.split('class="cio-attempts"', 1)[1].split("</table>", 1)[0]
    assert attempts.count("<tr") == 4  # the header and three attempts
    assert f'<a href="{admin_url(Delivery, "change", first.pk)}">2026-12-04 14:03:27</a>' in attempts
    assert "<strong>2026-12-04 14:03:37</strong> (this one)" in attempts
    assert f'<a href="{admin_url(Delivery, "change", third.pk)}">2026-12-04 14:04:37</a>' in attempts
    assert "retried from the admin" in attempts and "Customer.io is unavailable" in attempts


def test_a_delivery_tried_once_says_so(client, log_viewer, connection, ada):
    delivery = logged(connection, ada, 0)
    client.force_login(log_viewer)

    html = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()

    assert "Only this one: it was not retried." in html


# --- Retry on the row's page ---


def retry_url(delivery: Delivery) -> str:
    return admin_url(Delivery, "retry", delivery.pk)


@pytest.mark.parametrize("status", [FAILED, Delivery.Status.CANCELLED])
def test_retry_on_the_page_of_a_failed_or_cancelled_delivery_queues_the_person(
    client, marketer, connection, ada, status
):
    delivery = logged(connection, ada, 0, status=status, http_status=400)
    client.force_login(marketer)
    page = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()
    assert f'action="{retry_url(delivery)}"' in page and ">Retry</button>" in page

    response = client.post(retry_url(delivery), follow=True)

    assert response.redirect_chain == [(admin_url(Delivery, "change", delivery.pk), 302)]
    assert "Queued 1 person to be sent again with their current state." in response.content.decode()
    forward = Forward.objects.get()
    assert (forward.connection, forward.profile, forward.reason) == (connection, ada, Forward.Reason.RETRY)


@pytest.mark.parametrize("status", [SUCCEEDED, RETRYING, Delivery.Status.PENDING, Delivery.Status.SKIPPED])
def test_no_retry_for_a_delivery_that_did_not_fail(client, marketer, connection, ada, status):
    delivery = logged(connection, ada, 0, status=status)
    client.force_login(marketer)

    page = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()
    response = client.post(retry_url(delivery), follow=True)

    assert ">Retry</button>" not in page
    assert "Nothing to retry: only failed or cancelled deliveries are retried." in response.content.decode()
    assert not Forward.objects.exists()


def test_no_retry_for_a_person_since_deleted(client, marketer, connection):
    delivery = logged(connection, None, 0, status=FAILED, customer_id="gone")
    client.force_login(marketer)

    page = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()

    assert ">Retry</button>" not in page


def test_log_viewers_get_no_retry_button_and_cannot_post_it(client, log_viewer, connection, ada):
    delivery = logged(connection, ada, 0, status=FAILED, http_status=400)
    client.force_login(log_viewer)

    page = client.get(admin_url(Delivery, "change", delivery.pk)).content.decode()
    response = client.post(retry_url(delivery))

    assert ">Retry</button>" not in page
    assert response.status_code == 403
    assert not Forward.objects.exists()


def test_retry_is_post_only_and_needs_the_csrf_token(marketer, connection, ada):
    delivery = logged(connection, ada, 0, status=FAILED, http_status=400)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(marketer)

    assert browser.get(retry_url(delivery)).status_code == 405
    assert browser.post(retry_url(delivery)).status_code == 403  # no token
    assert not Forward.objects.exists()


def test_retry_of_an_unknown_delivery_is_not_found(client, marketer):
    client.force_login(marketer)

    assert client.post(admin_url(Delivery, "retry", 987654)).status_code == 404
