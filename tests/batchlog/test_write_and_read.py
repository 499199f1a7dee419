"""The batch log's write API (pending before the call, completed after) and a person's view of it."""

import json

import pytest
from django.db import connection as db

from connections.customerio.client import Outcome
from connections.models import BatchDelivery
from connections.models.delivery import RESPONSE_MAX_CHARS
from connections.services.forwarding.batch_log import batch_entries_for_profile, complete_batch
from tests.support.batch_log import identify_body, log_identify, log_segment_add, result
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return ProfileFactory.create_batch(3)


def test_a_request_is_logged_pending_with_its_people_and_exact_body(people):
    connection = ConnectionFactory()
    ref = log_identify(connection, people)

    row = BatchDelivery.objects.get(pk=ref.id)
    assert row.status == "pending"
    assert row.created_at == ref.created_at
    assert (row.connection_id, row.reason, row.action, row.transport, row.attempt) == (
        connection.pk,
        "activation",
        "identify",
        "v2_batch",
        1,
    )
    assert row.people == 3
    assert row.profile_ids == [p.pk for p in people]
    assert bytes(row.body) == identify_body(people)
    assert row.finished_at is None


@pytest.mark.parametrize(
    ("outcome", "item_errors", "status"),
    [
        (Outcome.SUCCEEDED, {}, "succeeded"),
        (Outcome.SUCCEEDED, {1: "email: invalid"}, "partial"),
        (Outcome.FAILED, {}, "failed"),
        (Outcome.CREDENTIALS_REJECTED, {}, "failed"),
        (Outcome.RETRY, {}, "retrying"),
    ],
)
def test_the_answer_sets_the_status(people, outcome, item_errors, status):
    ref = log_identify(ConnectionFactory(), people)
    complete_batch(ref, result(outcome, http_status=207 if item_errors else 200), item_errors)

    row = BatchDelivery.objects.get(pk=ref.id)
    assert row.status == status
    assert row.item_errors == {str(k): v for k, v in item_errors.items()}
    assert row.duration_ms == 42
    assert row.finished_at is not None


def test_a_transient_failure_says_it_will_be_retried_and_a_long_answer_is_cut(people):
    ref = log_identify(ConnectionFactory(), people)
    complete_batch(ref, result(Outcome.RETRY, 503, "x" * 5000, "Customer.io answered 503."), {})

    row = BatchDelivery.objects.get(pk=ref.id)
    assert row.error == "Customer.io answered 503. Will retry."
    assert row.http_status == 503
    assert len(row.response) == RESPONSE_MAX_CHARS


def test_a_person_sees_what_was_sent_to_them_newest_first(people):
    connection = ConnectionFactory()
    first = log_identify(connection, people)
    complete_batch(first, result(Outcome.SUCCEEDED, 207), {1: "email: invalid"})
    second = log_segment_add(connection, [people[2], people[1]])
    complete_batch(second, result(Outcome.SUCCEEDED), {})
    log_identify(connection, [people[0]])  # not them

    entries = batch_entries_for_profile(people[1].pk).entries

    assert [e.row.pk for e in entries] == [second.id, first.id]
    newest, oldest = entries
    assert (newest.position, newest.item, newest.item_error) == (1, people[1].customer_id, "")
    assert newest.outcome_for_person == "succeeded"
    assert oldest.position == 1
    assert oldest.item["identifiers"] == {"id": people[1].customer_id}
    assert oldest.item["attributes"]["email"] == people[1].email
    assert oldest.item_error == "email: invalid"
    assert oldest.outcome_for_person == "failed"
    # The others of the partly rejected request went through.
    assert batch_entries_for_profile(people[0].pk).entries[-1].outcome_for_person == "succeeded"


def test_a_persons_entries_come_in_pages(people):
    connection = ConnectionFactory()
    refs = [log_identify(connection, people) for _ in range(5)]

    first = batch_entries_for_profile(people[0].pk, page=1, per_page=2)
    last = batch_entries_for_profile(people[0].pk, page=3, per_page=2)

    assert [e.row.pk for e in first.entries] == [refs[4].id, refs[3].id]
    assert first.has_next
    assert [e.row.pk for e in last.entries] == [refs[0].id]
    assert not last.has_next


def test_a_page_does_not_read_bodies_back(people):
    log_identify(ConnectionFactory(), people)
    entry = batch_entries_for_profile(people[0].pk).entries[0]
    if db.vendor == "postgresql":
        assert "body" in entry.row.get_deferred_fields()
    assert json.dumps(entry.item)  # the person's item alone


@pytest.mark.skipif("db.vendor != 'postgresql'")
def test_postgresql_finds_a_persons_requests_through_the_gin_index(people):
    log_identify(ConnectionFactory(), people)
    with db.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM connections_batchdelivery WHERE profile_ids @> ARRAY[%s]::bigint[]",
            [people[0].pk],
        )
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "profile_ids_idx" in plan


@pytest.mark.skipif("db.vendor != 'postgresql'")
def test_postgresql_writes_a_request_into_its_months_partition(people):
    ref = log_identify(ConnectionFactory(), people)
    with db.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM connections_batchdelivery WHERE id = %s", [ref.id])
        (partition,) = cursor.fetchone()
    assert partition == f"connections_batchdelivery_{ref.created_at:%Y_%m}"
