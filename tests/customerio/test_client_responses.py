"""How the client reads answers the stand-in has no reason to give, from a scripted server.

The happy paths and Customer.io's documented faults run against the stand-in in
test_client.py; here the server answers exactly what each test scripts.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate
from urllib.parse import quote, quote_plus

import pytest

import connections
from connections.customerio.client import CustomerIOClient, Outcome, parse_retry_after
from tests.support.scripted_server import Answer, ScriptedServer, scripted_server

SITE_ID = "site-1"
API_KEY = "trackkey-5e4d3c2b1a0f9e8d7c6b"
BASIC_CREDENTIALS = base64.b64encode(f"{SITE_ID}:{API_KEY}".encode()).decode()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


@pytest.fixture
def client(server: ScriptedServer) -> CustomerIOClient:
    return CustomerIOClient(SITE_ID, API_KEY, "us", base_url=server.url, timeout=2.0)


# --- what goes out ------------------------------------------------------------------------


def test_requests_carry_basic_auth_json_and_a_user_agent_naming_the_product(server, client):
    client.identify("cust-1", {"In Café": "true"})

    request = server.received[0]
    assert request.method == "PUT"
    assert request.headers["Authorization"] == f"Basic {BASIC_CREDENTIALS}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"cioaudience/{connections.__version__}"
    assert request.body == '{"In Café":"true"}'.encode()


def test_batch_body_is_the_v2_envelope_of_identify_actions(server, client):
    client.batch_identify([("a", {"SegmentMembership": "'1'"})])

    request = server.received[0]
    assert (request.method, request.path) == ("POST", "/api/v2/batch")
    assert json.loads(request.body) == {
        "batch": [
            {
                "type": "person",
                "action": "identify",
                "identifiers": {"id": "a"},
                "attributes": {"SegmentMembership": "'1'"},
            }
        ]
    }


def test_region_check_is_a_get_without_a_body(server, client):
    server.answer = Answer(200, {"region": "us", "url": "https://track.customer.io", "environment_id": 3})

    answer = client.account_region()

    assert (server.received[0].method, server.received[0].path) == ("GET", "/api/v1/accounts/region")
    assert server.received[0].body == b""
    assert (answer.region, answer.environment_id) == ("us", 3)


def test_a_customer_id_that_cannot_be_utf8_fails_without_a_request(server, client):
    result = client.identify("bad-\ud800", {})

    assert result.outcome is Outcome.FAILED
    assert "UTF-8" in result.error
    assert server.received == []


# --- how answers are classified -----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "message"),
    [
        pytest.param(Answer(204), Outcome.SUCCEEDED, "", id="204-succeeds"),
        pytest.param(
            Answer(403, {"meta": {"error": "Forbidden"}}), Outcome.CREDENTIALS_REJECTED, "Forbidden", id="403"
        ),
        pytest.param(Answer(404, "no such thing"), Outcome.FAILED, "no such thing", id="404-plain-text"),
        pytest.param(Answer(413, {"meta": {"error": "too big"}}), Outcome.FAILED, "too big", id="413-meta-error"),
        pytest.param(
            Answer(422, {"meta": {"errors": ["email is invalid", "plan is odd"]}}),
            Outcome.FAILED,
            "email is invalid; plan is odd",
            id="422-meta-errors-list",
        ),
        pytest.param(
            Answer(400, {"errors": [{"reason": "invalid", "field": "attributes", "message": "not flat"}]}),
            Outcome.FAILED,
            "not flat (reason: invalid, field: attributes)",
            id="400-v2-errors-list",
        ),
        pytest.param(Answer(408), Outcome.RETRY, "HTTP 408", id="408-request-timeout-retries"),
        pytest.param(Answer(599, "odd gateway"), Outcome.RETRY, "odd gateway", id="any-5xx-retries"),
        pytest.param(
            Answer(302, headers={"Location": "http://elsewhere.test/"}),
            Outcome.FAILED,
            "HTTP 302",
            id="redirect-not-followed",
        ),
    ],
)
def test_answers_are_classified(server, client, answer, outcome, message):
    server.answer = answer

    result = client.identify("cust-1", {})

    assert result.outcome is outcome
    assert result.http_status == answer.status
    assert message in result.error
    assert len(server.received) == 1, "exactly one attempt: retrying is the caller's job"


def test_retry_after_as_an_http_date_becomes_seconds(server, client):
    server.answer = Answer(429, headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})

    result = client.identify("cust-1", {})

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and 110 <= result.retry_after <= 120


def test_an_unreadable_retry_after_is_ignored(server, client):
    server.answer = Answer(503, headers={"Retry-After": "later, maybe"})

    result = client.identify("cust-1", {})

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is None


def test_response_text_is_truncated_to_2000_characters(server, client):
    server.answer = Answer(400, "x" * 5000)

    result = client.identify("cust-1", {})

    assert result.response_text == "x" * 2000


# --- 207 bodies that do not say what Customer.io documents --------------------------------


def test_a_207_without_a_readable_error_list_retries_the_whole_batch(server, client):
    server.answer = Answer(207, "<html>partial</html>")

    batch = client.batch_identify([("a", {}), ("b", {})])

    assert batch.overall.outcome is Outcome.RETRY
    assert [item.outcome for item in batch.items] == [Outcome.RETRY, Outcome.RETRY]


def test_207_errors_without_a_valid_batch_index_are_reported_not_pinned_on_anyone(server, client):
    server.answer = Answer(
        207,
        {
            "errors": [
                {"batch_index": 1, "reason": "invalid", "field": "identifiers", "message": "bad id"},
                {"batch_index": 9, "reason": "invalid", "message": "out of range"},
                {"message": "no index at all"},
            ]
        },
    )

    batch = client.batch_identify([("a", {}), ("b", {})])

    assert [item.outcome for item in batch.items] == [Outcome.SUCCEEDED, Outcome.FAILED]
    assert batch.items[1].error == "bad id (reason: invalid, field: identifiers)"
    assert "out of range" in batch.overall.error and "no index at all" in batch.overall.error


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 500])
def test_credentials_echoed_by_the_server_are_scrubbed(server, client, status):
    server.answer = Answer(status, {"meta": {"error": f"bad key {API_KEY} in Basic {BASIC_CREDENTIALS}"}})

    result = client.identify("cust-1", {})

    for text in (result.error, result.response_text):
        assert API_KEY not in text
        assert BASIC_CREDENTIALS not in text
        assert "[redacted]" in text


def test_credentials_are_scrubbed_from_207_item_errors(server, client):
    server.answer = Answer(207, {"errors": [{"batch_index": 0, "message": f"key {API_KEY}"}]})

    batch = client.batch_identify([("a", {})])

    assert API_KEY not in batch.items[0].error
    assert API_KEY not in batch.overall.response_text


# --- Retry-After parsing ------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(" 3 ", 3.0, id="padded"),
        pytest.param("1.5", 1.5, id="fractional-leniently"),
        pytest.param("-5", 0.0, id="negative-clamped"),
        pytest.param(format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0, id="http-date"),
        pytest.param(format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0, id="http-date-in-the-past"),
        pytest.param("Wed, 01 Jan 2026 12:00:30", 30.0, id="http-date-without-zone-read-as-gmt"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="not-a-number"),
        pytest.param("inf", None, id="infinity"),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


# --- no person in an error text (issue 26, defect 3) --------------------------------------

PERSON = "jane.doe@example.com"
ECHO = f"no such person {PERSON} ({quote(PERSON, safe='')}, {quote_plus(PERSON.upper()).lower()})"


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda client: client.identify(PERSON, {}), id="identify-path"),
        pytest.param(lambda client: client.identify("cust-1", {"email": PERSON}), id="identify-body"),
        pytest.param(lambda client: client.suppress_person(PERSON), id="suppress"),
        pytest.param(lambda client: client.add_to_segment(7, [PERSON], "email"), id="segment"),
        pytest.param(lambda client: client.batch_identify([(PERSON, {})]).overall, id="batch"),
    ],
)
def test_an_answer_echoing_the_person_leaves_them_out_of_the_error(server, client, send):
    server.answer = Answer(400, {"meta": {"error": ECHO}})

    result = send(client)

    assert result.outcome is Outcome.FAILED
    assert result.error.endswith("no such person [identifier] ([identifier], [identifier])")


def test_207_errors_echoing_a_person_leave_them_out(server, client):
    server.answer = Answer(
        207, {"errors": [{"batch_index": 0, "message": f"bad {PERSON}"}, {"message": f"odd {quote(PERSON)}"}]}
    )

    batch = client.batch_identify([(PERSON, {}), ("cust-2", {})])

    assert batch.items[0].error == "bad [identifier]"
    assert "odd [identifier]" in batch.overall.error and "%40" not in batch.overall.error


@pytest.mark.parametrize("status", [207, 400])
def test_the_response_text_kept_for_the_log_holds_no_person_either(server, client, status):
    """The log row of a request in flight is completed after an erasure that scrubbed it: the text it
    gets then must hold nobody (the erasure's scrub has already run)."""
    server.answer = Answer(status, {"errors": [{"batch_index": 0, "message": ECHO}]})

    batch = client.batch_identify([(PERSON, {}), ("cust-2", {})])

    assert "no such person [identifier]" in batch.overall.response_text
    for form in (PERSON, quote(PERSON, safe=""), quote_plus(PERSON)):
        assert form not in batch.overall.response_text.lower()
