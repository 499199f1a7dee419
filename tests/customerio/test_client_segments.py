"""The Track client's identifiers, update-only flag and manual segments, over real HTTP to the stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cio_standin import Faults, StandinServer, Workspace
from cio_standin.contract import validate_segment_body
from connections.customerio.client import SEGMENT_MAX_IDS, CustomerIOClient, Outcome
from connections.customerio.identifiers import Identifier

SITE_ID = "site-seg"
API_KEY = "trackkey-5e6f7a8b9c0d1e2f"


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    server = StandinServer([Workspace(SITE_ID, API_KEY)]).start()
    yield server
    assert server.invalid_requests() == [], "the client sent a body that breaks Customer.io's OpenAPI contract"
    server.stop()


@pytest.fixture
def client(cio: StandinServer) -> CustomerIOClient:
    return CustomerIOClient(SITE_ID, API_KEY, "us", base_url=cio.url, timeout=2.0)


# --- identifiers -------------------------------------------------------------------------


def test_v2_identifies_a_person_by_email(cio, client):
    result = client.batch_identify(
        [(Identifier("email", "max@example.com"), {"email": "max@example.com", "SegmentMembership": "'1'"})]
    )

    assert result.overall.outcome is Outcome.SUCCEEDED, result.overall.error
    assert [item.customer_id for item in result.items] == ["max@example.com"]
    [request] = cio.requests(SITE_ID)
    assert request.body["batch"][0]["identifiers"] == {"email": "max@example.com"}
    assert cio.people(SITE_ID) == {"max@example.com": {"email": "max@example.com", "SegmentMembership": "'1'"}}


def test_v1_puts_the_percent_encoded_email_in_the_path(cio, client):
    result = client.identify(Identifier("email", "max+vip@example.com"), {"first_name": "Max"})

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert [request.path for request in cio.requests(SITE_ID)] == ["/api/v1/customers/max%2Bvip%40example.com"]
    assert cio.people(SITE_ID) == {"max+vip@example.com": {"first_name": "Max"}}


def test_a_batch_mixes_people_identified_by_id_and_by_email(cio, client):
    result = client.batch_identify(
        [("cust-1", {"plan": "a"}), (Identifier("id", "cust-2"), {}), (Identifier("email", "c@example.com"), {})]
    )

    assert result.overall.outcome is Outcome.SUCCEEDED
    assert set(cio.people(SITE_ID)) == {"cust-1", "cust-2", "c@example.com"}


def test_emails_name_one_person_whatever_their_case(cio, client):
    client.batch_identify([(Identifier("email", "Max@Example.com"), {"plan": "a"})])
    client.identify(Identifier("email", "max@example.com"), {"plan": "b"})

    assert cio.people(SITE_ID) == {"Max@Example.com": {"plan": "b"}}


# --- update existing people only -----------------------------------------------------------


def test_update_only_changes_a_person_who_exists_and_creates_nobody(cio, client):
    client.batch_identify([("known", {"plan": "a"})])

    result = client.batch_identify([("known", {"plan": "b", "_update": True}), ("stranger", {"_update": True})])

    assert result.overall.outcome is Outcome.SUCCEEDED
    assert cio.people(SITE_ID) == {"known": {"plan": "b"}}, "the flag is not stored and nobody is created"
    assert cio.requests(SITE_ID)[-1].notes == ["stranger: no such person; _update is true, so nobody was created"]


def test_update_only_by_email_finds_the_person_created_by_email(cio, client):
    client.batch_identify([(Identifier("email", "max@example.com"), {"plan": "a"})])

    client.batch_identify([(Identifier("email", "max@example.com"), {"plan": "b", "_update": True})])

    assert cio.people(SITE_ID) == {"max@example.com": {"plan": "b"}}


# --- manual segments -----------------------------------------------------------------------


def test_add_to_segment_puts_existing_people_in_it(cio, client):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    client.batch_identify([("a", {}), ("b", {})])

    result = client.add_to_segment(segment_id, ["a", "b"])

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.http_status == 200
    assert cio.segment_members(SITE_ID, segment_id) == {"a", "b"}
    request = cio.requests(SITE_ID)[-1]
    assert request.path == f"/api/v1/segments/{segment_id}/add_customers"
    assert request.body == {"ids": ["a", "b"]}
    assert validate_segment_body("add_customers", request.body) == []


def test_remove_from_segment_takes_people_out(cio, client):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    client.batch_identify([("a", {}), ("b", {})])
    client.add_to_segment(segment_id, ["a", "b"])

    result = client.remove_from_segment(segment_id, ["a"])

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert cio.segment_members(SITE_ID, segment_id) == {"b"}
    assert cio.requests(SITE_ID)[-1].path == f"/api/v1/segments/{segment_id}/remove_customers"


def test_segment_requests_by_email_send_id_type_email(cio, client):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    client.batch_identify([(Identifier("email", "max@example.com"), {}), ("cust-9", {"email": "eve@example.com"})])

    result = client.add_to_segment(segment_id, ["max@example.com", "EVE@example.com"], id_type="email")

    assert result.outcome is Outcome.SUCCEEDED
    assert cio.segment_members(SITE_ID, segment_id) == {"max@example.com", "cust-9"}
    # Sent as Customer.io documents it: the kind of every id in the id_type query parameter.
    recorded = [r for r in cio.requests(SITE_ID) if "segments" in r.path]
    assert recorded and all(r.valid for r in recorded)

    client.remove_from_segment(segment_id, ["max@example.com"], id_type="email")

    assert cio.segment_members(SITE_ID, segment_id) == {"cust-9"}


def test_ids_of_the_wrong_kind_or_of_nobody_are_ignored_as_customerio_does(cio, client):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    client.batch_identify([("a", {"email": "a@example.com"})])

    result = client.add_to_segment(segment_id, ["a@example.com", "ghost"])  # id_type "id": the email is no id

    assert result.outcome is Outcome.SUCCEEDED
    assert cio.segment_members(SITE_ID, segment_id) == set()
    assert cio.requests(SITE_ID)[-1].notes == ["ignored 2 ids matching nobody: a@example.com, ghost"]


def test_a_segment_that_does_not_exist_fails_for_good(cio, client):
    client.batch_identify([("a", {})])

    result = client.add_to_segment(4242, ["a"])

    assert result.outcome is Outcome.FAILED
    assert result.http_status == 404
    assert "segment 4242 not found" in result.error


def test_exactly_1000_ids_go_in_one_request(cio, client):
    segment_id = cio.create_segment(SITE_ID, "Big")
    ids = [f"p{index}" for index in range(SEGMENT_MAX_IDS)]
    client.batch_identify([(person, {}) for person in ids])

    result = client.add_to_segment(segment_id, ids)

    assert result.outcome is Outcome.SUCCEEDED
    assert len(cio.segment_members(SITE_ID, segment_id)) == 1000


@pytest.mark.parametrize(
    ("segment_id", "ids", "id_type", "message"),
    [
        pytest.param(7, [f"p{index}" for index in range(1001)], "id", "1,001 ids; Customer.io allows at most 1,000",
                     id="1001-ids"),
        pytest.param(7, [], "id", "at least one id", id="no-ids"),
        pytest.param(7, "abc", "id", "not one string", id="a-string-is-not-a-list-of-ids"),
        pytest.param(7, ["a"], "phone", "unknown id_type 'phone'", id="unknown-id-type"),
        pytest.param(0, ["a"], "id", "positive integer", id="segment-zero"),
        pytest.param(True, ["a"], "id", "positive integer", id="segment-bool"),
    ],
)
def test_bad_segment_arguments_are_refused_before_anything_is_sent(cio, client, segment_id, ids, id_type, message):
    with pytest.raises(ValueError, match=message):
        client.add_to_segment(segment_id, ids, id_type=id_type)
    assert cio.requests(SITE_ID) == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_transient_failure_of_a_segment_request_is_retryable_and_changes_nothing(cio, client, status):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    client.batch_identify([("a", {})])
    cio.set_faults(Faults(share=1.0, statuses=(status,)))

    result = client.add_to_segment(segment_id, ["a"])

    assert result.outcome is Outcome.RETRY
    assert cio.segment_members(SITE_ID, segment_id) == set()


def test_segment_requests_with_wrong_credentials_fault_the_connection(cio):
    segment_id = cio.create_segment(SITE_ID, "VIP")
    wrong = CustomerIOClient(SITE_ID, "not-the-key-123", "us", base_url=cio.url)

    result = wrong.add_to_segment(segment_id, ["a"])

    assert result.outcome is Outcome.CREDENTIALS_REJECTED
    assert "not-the-key-123" not in result.error + result.response_text
