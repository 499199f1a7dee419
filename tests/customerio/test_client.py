"""The Customer.io client over real HTTP against the local stand-in (cio_standin)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from cio_standin import Faults, StandinServer, Workspace, validate_v1_identify_body, validate_v2_batch_body
from connections.customerio.client import CustomerIOClient, Outcome, SendResult

SITE_ID = "site-us"
API_KEY = "trackkey-9f8e7d6c5b4a39281706"
REPO_ROOT = Path(__file__).resolve().parents[2]
EU_SITE_ID = "site-eu"
EU_API_KEY = "trackkey-eu-0a1b2c3d4e5f60718293"


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    server = StandinServer(
        [Workspace(SITE_ID, API_KEY, region="us"), Workspace(EU_SITE_ID, EU_API_KEY, region="eu")]
    ).start()
    yield server
    server.stop()


@pytest.fixture
def client(cio: StandinServer) -> CustomerIOClient:
    return CustomerIOClient(SITE_ID, API_KEY, "us", base_url=cio.url, timeout=2.0)


def assert_every_body_matches_customerio_contract(cio: StandinServer) -> None:
    """Held against Customer.io's own OpenAPI document, not against the stand-in's reading of it."""
    recorded = [request for request in cio.requests() if request.method in ("PUT", "POST")]
    assert recorded, "the client sent nothing"
    for request in recorded:
        validate = validate_v1_identify_body if request.method == "PUT" else validate_v2_batch_body
        assert validate(request.body) == [], request.path


def assert_no_secret_in(result: SendResult) -> None:
    for text in (result.error, result.response_text, repr(result)):
        assert API_KEY not in text


# --- v1 identify --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer_id", "expected_path"),
    [
        pytest.param("cust-42", "/api/v1/customers/cust-42", id="plain"),
        pytest.param("a/b", "/api/v1/customers/a%2Fb", id="slash-stays-in-one-segment"),
        pytest.param("Jane Doe", "/api/v1/customers/Jane%20Doe", id="space"),
        pytest.param("100%", "/api/v1/customers/100%25", id="percent"),
        pytest.param("what?x=1#y", "/api/v1/customers/what%3Fx%3D1%23y", id="query-and-fragment-characters"),
        pytest.param("Zoë東京", "/api/v1/customers/Zo%C3%AB%E6%9D%B1%E4%BA%AC", id="non-ascii"),
        pytest.param("jane@example.com", "/api/v1/customers/jane%40example.com", id="email-like"),
    ],
)
def test_identify_puts_the_attributes_on_the_person_named_by_the_whole_id(cio, client, customer_id, expected_path):
    result = client.identify(customer_id, {"email": "jane@example.com", "SegmentMembership": "'1','2'"})

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.http_status == 200
    assert [request.path for request in cio.requests(SITE_ID)] == [expected_path]
    assert cio.people(SITE_ID) == {customer_id: {"email": "jane@example.com", "SegmentMembership": "'1','2'"}}
    assert_every_body_matches_customerio_contract(cio)


def test_identify_reports_the_bytes_sent_and_how_long_it_took(client):
    attributes = {"In Café": "true"}

    result = client.identify("cust-1", attributes)

    assert result.bytes_sent == len('{"In Café":"true"}'.encode())
    assert result.duration_ms >= 0
    assert result.retry_after is None
    assert result.error == ""


def test_identify_is_authenticated_with_the_site_id_and_api_key(cio):
    wrong_key = CustomerIOClient(SITE_ID, "not-the-key", "us", base_url=cio.url)

    assert wrong_key.identify("cust-1", {}).outcome is Outcome.CREDENTIALS_REJECTED
    assert cio.people(SITE_ID) == {}


def test_401_means_credentials_rejected_and_never_echoes_the_key(cio):
    client = CustomerIOClient("unknown-site", API_KEY, "us", base_url=cio.url)

    result = client.identify("cust-1", {"email": "a@example.com"})

    assert result.outcome is Outcome.CREDENTIALS_REJECTED
    assert result.http_status == 401
    assert "HTTP 401" in result.error and "Unauthorized request" in result.error
    assert_no_secret_in(result)


def test_400_fails_for_good_with_customerios_message(cio, client):
    # A nested object is not an attribute value Customer.io accepts on v1.
    result = client.identify("cust-1", {"plan": {"nested": "object"}})  # type: ignore[dict-item]

    assert result.outcome is Outcome.FAILED
    assert result.http_status == 400
    assert "HTTP 400" in result.error and "plan" in result.error
    assert result.retry_after is None
    assert cio.people(SITE_ID) == {}


# --- v2 batch -----------------------------------------------------------------------------


def test_batch_identify_sends_one_request_for_all_people(cio, client):
    items = [("a/1", {"SegmentMembership": "'1'"}), ("Zoë", {"In VIP": "true"}), ("c 3", {"SegmentMembership": ""})]

    batch = client.batch_identify(items)

    assert batch.overall.outcome is Outcome.SUCCEEDED, batch.overall.error
    assert [(item.index, item.customer_id, item.outcome) for item in batch.items] == [
        (0, "a/1", Outcome.SUCCEEDED),
        (1, "Zoë", Outcome.SUCCEEDED),
        (2, "c 3", Outcome.SUCCEEDED),
    ]
    assert [request.path for request in cio.requests(SITE_ID)] == ["/api/v2/batch"]
    assert cio.people(SITE_ID) == {
        "a/1": {"SegmentMembership": "'1'"},
        "Zoë": {"In VIP": "true"},
        "c 3": {"SegmentMembership": ""},
    }
    assert_every_body_matches_customerio_contract(cio)


def test_a_207_fails_exactly_the_items_customerio_names(cio, client):
    too_large = {f"note_{index}": "x" * 900 for index in range(40)}  # one action over 32 KB
    items = [("first", {"In A": "true"}), ("oversized", too_large), ("third", {"In A": "false"})]

    batch = client.batch_identify(items)

    assert batch.overall.http_status == 207
    assert batch.overall.outcome is Outcome.SUCCEEDED
    assert "1 of 3" in batch.overall.error
    outcomes = {item.customer_id: item.outcome for item in batch.items}
    assert outcomes == {"first": Outcome.SUCCEEDED, "oversized": Outcome.FAILED, "third": Outcome.SUCCEEDED}
    failed = batch.items[1]
    assert failed.index == 1 and "too_large" in failed.error and "32768" in failed.error
    assert set(cio.people(SITE_ID)) == {"first", "third"}


def test_injected_207_item_failures_map_back_to_their_customer_ids(cio, client):
    cio.set_faults(Faults(partial_207_share=0.5, seed=7))
    items = [(f"cust-{index}", {"In A": "true"}) for index in range(20)]

    batch = client.batch_identify(items)

    failed = {item.customer_id for item in batch.items if item.outcome is Outcome.FAILED}
    succeeded = {item.customer_id for item in batch.items if item.outcome is Outcome.SUCCEEDED}
    assert failed and succeeded
    assert succeeded == set(cio.people(SITE_ID)), "exactly the people Customer.io kept succeeded"
    assert all("injected failure" in item.error for item in batch.items if item.outcome is Outcome.FAILED)


def test_a_failed_batch_gives_every_item_the_batch_outcome(cio, client):
    cio.set_faults(Faults(share=1.0, statuses=(503,), retry_after=4))

    batch = client.batch_identify([("a", {}), ("b", {})])

    assert batch.overall.outcome is Outcome.RETRY
    assert batch.overall.retry_after == 4.0
    assert [item.outcome for item in batch.items] == [Outcome.RETRY, Outcome.RETRY]


def test_an_empty_batch_is_a_programming_error(client):
    with pytest.raises(ValueError, match="at least one item"):
        client.batch_identify([])


# --- transient failures -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(cio, client, status):
    cio.set_faults(Faults(share=1.0, statuses=(status,), retry_after=None))

    result = client.identify("cust-1", {})

    assert result.outcome is Outcome.RETRY
    assert result.http_status == status
    assert f"HTTP {status}" in result.error
    assert result.retry_after is None


def test_429_is_retried_after_the_time_customerio_asks_for(cio, client):
    cio.set_faults(Faults(share=1.0, statuses=(429,), retry_after=7))

    result = client.identify("cust-1", {})

    assert result.outcome is Outcome.RETRY
    assert result.http_status == 429
    assert result.retry_after == 7.0


def test_the_stand_ins_own_rate_limit_429_is_retried(cio):
    cio.add_workspace(Workspace("limited", API_KEY, rate_limit=1))
    client = CustomerIOClient("limited", API_KEY, "us", base_url=cio.url)

    results = [client.identify(f"cust-{index}", {}) for index in range(3)]

    assert results[0].outcome is Outcome.SUCCEEDED
    assert Outcome.RETRY in {result.outcome for result in results[1:]}
    assert all(result.retry_after is not None for result in results if result.outcome is Outcome.RETRY)


def test_a_timeout_is_retried_and_does_not_wait_past_the_client_timeout(cio):
    cio.set_faults(Faults(timeout_share=1.0, timeout_seconds=5.0))
    client = CustomerIOClient(SITE_ID, API_KEY, "us", base_url=cio.url, timeout=0.3)

    result = client.identify("cust-1", {"In A": "true"})

    assert result.outcome is Outcome.RETRY
    assert result.http_status is None
    assert "0.3s" in result.error
    assert result.duration_ms < 2000
    assert_no_secret_in(result)


def test_a_dropped_connection_is_retried(cio, client):
    cio.set_faults(Faults(drop_share=1.0))

    result = client.identify("cust-1", {"In A": "true"})

    assert result.outcome is Outcome.RETRY
    assert result.http_status is None
    assert "connection" in result.error.lower()
    assert_no_secret_in(result)


def test_a_refused_connection_is_retried(cio):
    url = cio.url
    cio.stop()
    client = CustomerIOClient(SITE_ID, API_KEY, "us", base_url=url, timeout=1.0)

    result = client.identify("cust-1", {})

    assert result.outcome is Outcome.RETRY
    assert result.http_status is None
    assert_no_secret_in(result)


def test_the_client_recovers_once_faults_stop(cio, client):
    cio.set_faults(Faults(drop_share=1.0))
    assert client.identify("cust-1", {"In A": "true"}).outcome is Outcome.RETRY

    cio.clear_faults()

    assert client.identify("cust-1", {"In A": "true"}).outcome is Outcome.SUCCEEDED
    assert cio.people(SITE_ID) == {"cust-1": {"In A": "true"}}


def test_threads_can_share_one_client(cio, client):
    def send(thread: int) -> list[Outcome]:
        return [client.identify(f"t{thread}-{index}", {"In A": "true"}).outcome for index in range(25)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [outcome for batch in pool.map(send, range(8)) for outcome in batch]

    assert outcomes == [Outcome.SUCCEEDED] * 200
    assert len(cio.people(SITE_ID)) == 200


# --- region -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site_id", "api_key", "region", "url"),
    [
        pytest.param(SITE_ID, API_KEY, "us", "https://track.customer.io", id="us"),
        pytest.param(EU_SITE_ID, EU_API_KEY, "eu", "https://track-eu.customer.io", id="eu"),
    ],
)
def test_account_region_reports_the_workspaces_region(cio, site_id, api_key, region, url):
    client = CustomerIOClient(site_id, api_key, "us", base_url=cio.url)

    answer = client.account_region()

    assert answer.valid and not answer.rejected
    assert answer.region == region
    assert answer.url == url
    assert answer.environment_id == next(w.environment_id for w in cio.workspaces() if w.site_id == site_id)


def test_account_region_with_wrong_credentials_is_rejected(cio):
    answer = CustomerIOClient(SITE_ID, "wrong-key", "us", base_url=cio.url).account_region()

    assert answer.rejected and not answer.valid
    assert answer.region is None
    assert answer.result.http_status == 401


def test_account_region_when_customerio_is_unreachable_is_neither_valid_nor_rejected(cio):
    cio.stop()

    answer = CustomerIOClient(SITE_ID, API_KEY, "us", base_url=cio.url, timeout=1.0).account_region()

    assert not answer.valid and not answer.rejected
    assert answer.result.outcome is Outcome.RETRY


# --- configuration ------------------------------------------------------------------------


def test_hosts_come_from_settings_per_region(settings):
    settings.CUSTOMERIO_US_URL = "http://us.example.test/"
    settings.CUSTOMERIO_EU_URL = "http://eu.example.test"

    assert CustomerIOClient(SITE_ID, API_KEY, "us").base_url == "http://us.example.test"
    assert CustomerIOClient(SITE_ID, API_KEY, "eu").base_url == "http://eu.example.test"


def test_without_django_settings_the_real_customerio_hosts_are_used():
    code = (
        "from connections.customerio.client import CustomerIOClient as C;"
        "print(C('s', 'k', 'us').base_url, C('s', 'k', 'eu').base_url)"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    output = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    assert output.stdout.split() == ["https://track.customer.io", "https://track-eu.customer.io"]


def test_an_unknown_region_is_refused():
    with pytest.raises(ValueError, match="unknown region"):
        CustomerIOClient(SITE_ID, API_KEY, "apac")


def test_the_client_never_shows_its_api_key():
    client = CustomerIOClient(SITE_ID, API_KEY, "us", base_url="http://127.0.0.1:9")

    assert API_KEY not in repr(client)


def test_results_are_immutable_records(client):
    result = client.identify("cust-1", {})

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = Outcome.FAILED  # type: ignore[misc]


# --- no person in an error text (issue 26, defect 3) --------------------------------------

PERSON = "jane.doe+vip@example.com"
PERSON_FORMS = (PERSON, quote(PERSON, safe=""), quote_plus(PERSON), "jane.doe%2Bvip%40example.com")
PERSON_CALLS = {
    "identify": ("PUT /api/v1/customers/{identifier}", lambda client: client.identify(PERSON, {"email": PERSON})),
    "delete": ("DELETE /api/v1/customers/{identifier}", lambda client: client.delete_person(PERSON)),
    "suppress": ("POST /api/v1/customers/{identifier}/suppress", lambda client: client.suppress_person(PERSON)),
}


@pytest.mark.parametrize("call", PERSON_CALLS)
def test_a_refused_connection_is_described_by_route_not_by_the_url_holding_the_person(cio, call):
    url = cio.url
    cio.stop()
    client = CustomerIOClient(SITE_ID, API_KEY, "us", base_url=url, timeout=1.0)
    route, send = PERSON_CALLS[call]

    result = send(client)

    assert (result.outcome, result.http_status) == (Outcome.RETRY, None)
    assert result.error == f"{route}: connection to Customer.io failed (connection refused)"
    assert not [form for form in PERSON_FORMS if form in result.error]


@pytest.mark.parametrize("faults", [Faults(drop_share=1.0), Faults(timeout_share=1.0, timeout_seconds=5.0)])
def test_a_dropped_or_unanswered_request_is_described_without_the_person(cio, faults):
    cio.set_faults(faults)
    client = CustomerIOClient(SITE_ID, API_KEY, "us", base_url=cio.url, timeout=0.3)

    result = client.identify(PERSON, {"email": PERSON})

    assert (result.outcome, result.http_status) == (Outcome.RETRY, None)
    assert result.error.startswith("PUT /api/v1/customers/{identifier}: ")
    assert not [form for form in PERSON_FORMS if form in result.error]
