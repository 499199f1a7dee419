"""The batch log in the admin: a person's part of each request on their profile page, beside their
single updates, newest first; the requests' own list and page, read-only and light on 1,000-person rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.customerio.client import Outcome
from connections.models import BatchDelivery, Profile
from connections.services.forwarding.batch_log import complete_batch
from tests.support.admin import admin_url, make_delivery, page_text, texts_of
from tests.support.batch_log import log_identify, log_segment_add, result
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def moved_back(ref, minutes: int) -> None:
    BatchDelivery.objects.filter(id=ref.id).update(created_at=timezone.now() - timedelta(minutes=minutes))


@pytest.fixture
def history():
    """Ada: a single update (3 min ago), an identify batch where her item was rejected (2 min ago), a segment
    add that will be retried (1 min ago); Bob shares the requests."""
    connection = ConnectionFactory(name="US workspace")
    ada, bob = ProfileFactory(customer_id="ada", email="ada@example.com"), ProfileFactory(customer_id="bob")
    single = make_delivery(connection, ada, attributes={"email": "ada@old.example.com"})
    single.created_at = timezone.now() - timedelta(minutes=3)
    single.save()
    identify = log_identify(connection, [bob, ada])
    complete_batch(identify, result(Outcome.SUCCEEDED, 207, '{"errors":[{"batch_index":1}]}'), {1: "email is invalid"})
    moved_back(identify, 2)
    segment = log_segment_add(connection, [ada, bob], segment_id=12)
    complete_batch(segment, result(Outcome.RETRY, 503, "busy", "Customer.io answered 503."), {})
    return ada, bob, connection


def test_the_profile_page_shows_single_updates_and_batch_requests_in_one_timeline(as_role, history):
    ada, _bob, _ = history
    response = as_role("marketer").get(admin_url(Profile, "change", ada.pk))

    batch_rows = texts_of(response, "cio-history-batch")
    single_rows = texts_of(response, "cio-history-delivery")
    assert len(batch_rows) == 2 and len(single_rows) == 1
    segment, identify = batch_rows  # newest first
    assert "US workspace" in segment and "add to segment 12" in segment and '"ada"' not in segment
    assert "ada" in segment and "Failed for now, will retry" in segment and "HTTP 503" in segment
    assert "Customer.io answered 503. Will retry." in segment
    assert "identify" in identify and "emailada@example.com" in identify  # the name and value cells
    assert "Failed" in identify and "email is invalid" in identify and "HTTP 207" in identify
    assert "in a batch request of 2 people" in identify
    [table] = texts_of(response, "cio-history")
    assert table.index("add to segment 12") < table.index("email is invalid") < table.index("ada@old.example.com")


def test_bob_sees_his_own_items_outcome_not_adas_error(as_role, history):
    _ada, bob, _ = history
    response = as_role("marketer").get(admin_url(Profile, "change", bob.pk))

    _segment, identify = texts_of(response, "cio-history-batch")
    assert "Succeeded" in identify and "email is invalid" not in identify
    assert "idbob" in identify


def test_the_timeline_comes_in_pages(as_role, history):
    ada, _bob, connection = history
    for _ in range(10):
        log_identify(connection, [ada])
    client = as_role("marketer")

    first = client.get(admin_url(Profile, "change", ada.pk))
    second = client.get(admin_url(Profile, "change", ada.pk) + "?history=2")

    assert len(texts_of(first, "cio-history-batch")) == 10 and "Older" in page_text(first)
    assert len(texts_of(second, "cio-history-batch")) == 2 and len(texts_of(second, "cio-history-delivery")) == 1
    assert "Newer" in page_text(second) and "Older →" not in page_text(second)


def test_the_list_filters_and_never_reads_bodies(as_role, history):
    client = as_role("log_viewer")
    with CaptureQueriesContext(db) as captured:
        response = client.get(admin_url(BatchDelivery, "changelist") + "?status__exact=partial")
    assert response.status_code == 200
    rows = texts_of(response, "field-what")
    assert rows == ["Activation: identify"]
    listed = [q["sql"] for q in captured if "connections_batchdelivery" in q["sql"] and "SELECT" in q["sql"]]
    assert listed and not any('"body"' in sql or '"profile_ids"' in sql for sql in listed)

    everything = client.get(admin_url(BatchDelivery, "changelist"))
    assert texts_of(everything, "field-what") == ["Segment backfill: add to segment 12", "Activation: identify"]
    by_reason = client.get(admin_url(BatchDelivery, "changelist") + "?reason__exact=segment")
    assert texts_of(by_reason, "field-what") == ["Segment backfill: add to segment 12"]


def test_a_requests_page_shows_its_people_answer_and_a_cut_body(as_role):
    connection = ConnectionFactory(name="EU workspace")
    people = ProfileFactory.create_batch(30)
    ref = log_identify(connection, people, reason="resync")
    complete_batch(ref, result(Outcome.SUCCEEDED, 207, '{"errors":[{"batch_index":4,"reason":"bad"}]}'), {4: "bad"})

    text = page_text(as_role("log_viewer").get(admin_url(BatchDelivery, "change", ref.id)))

    assert "Resync: identify (30 people) → EU workspace: Partly rejected" in text
    assert '{"errors":[{"batch_index":4,"reason":"bad"}]}' in text and "#4: bad" in text
    assert "The first 20 of 30 items" in text
    assert people[19].customer_id in text and people[20].customer_id not in text


def test_nobody_changes_or_deletes_a_request(as_role, history):
    ref = BatchDelivery.objects.first()
    client = as_role("superuser")
    assert client.get(admin_url(BatchDelivery, "delete", ref.pk)).status_code == 403
    assert client.post(admin_url(BatchDelivery, "change", ref.pk), {"status": "succeeded"}).status_code == 403


def test_the_profile_page_costs_the_same_queries_however_many_requests_name_the_person(as_role, history):
    ada, bob, connection = history
    client = as_role("marketer")

    def queries() -> int:
        with CaptureQueriesContext(db) as captured:
            assert client.get(admin_url(Profile, "change", ada.pk)).status_code == 200
        return len(captured)

    before = queries()
    for _ in range(25):
        log_identify(connection, [bob, ada])
    assert queries() == before
