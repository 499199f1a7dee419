"""The App API client (manual segment creation, key check) over real HTTP to the stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cio_standin import StandinServer, Workspace
from connections.customerio.app_client import AppAPIError, CustomerIOAppClient
from connections.customerio.client import Outcome
from tests.support.scripted_server import Answer, scripted_server

SITE_ID = "site-app"
APP_KEY = "appkey-0f1e2d3c4b5a69788796"


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    server = StandinServer([Workspace(SITE_ID, "trackkey-1a2b3c4d", app_api_key=APP_KEY)]).start()
    yield server
    server.stop()


@pytest.fixture
def app(cio: StandinServer) -> CustomerIOAppClient:
    return CustomerIOAppClient(APP_KEY, "us", base_url=cio.url, timeout=2.0)


def test_create_segment_makes_an_empty_manual_segment_and_returns_its_id(cio, app):
    segment_id = app.create_segment("In New Users", "Members of mParticle audience 123")

    [segment] = cio.segments(SITE_ID)
    assert segment["id"] == segment_id
    assert (segment["name"], segment["description"], segment["type"]) == (
        "In New Users",
        "Members of mParticle audience 123",
        "manual",
    )
    assert segment["members"] == []
    [request] = cio.requests(SITE_ID)
    assert (request.method, request.path) == ("POST", "/v1/segments")
    assert request.body == {"segment": {"name": "In New Users", "description": "Members of mParticle audience 123"}}


def test_each_segment_gets_its_own_id(app):
    assert app.create_segment("A") != app.create_segment("B")


def test_a_rejected_key_raises_with_a_message_that_names_the_app_api_key_but_not_the_key(cio):
    wrong = CustomerIOAppClient("appkey-wrong-5566", "us", base_url=cio.url)

    with pytest.raises(AppAPIError) as raised:
        wrong.create_segment("VIP")

    assert raised.value.rejected
    assert "rejected the App API key (HTTP 401)" in str(raised.value)
    assert "appkey-wrong-5566" not in str(raised.value)
    assert cio.segments(SITE_ID) == []


def test_the_track_key_is_not_an_app_api_key(cio):
    with pytest.raises(AppAPIError, match="HTTP 401"):
        CustomerIOAppClient("trackkey-1a2b3c4d", "us", base_url=cio.url).create_segment("VIP")


def test_an_unreachable_app_api_says_the_segment_may_exist_all_the_same(cio, app):
    cio.stop()

    with pytest.raises(AppAPIError) as raised:
        CustomerIOAppClient(APP_KEY, "us", base_url=cio.url, timeout=1.0).create_segment("VIP")

    assert raised.value.result.outcome is Outcome.RETRY
    assert "look for it in Customer.io before trying again" in str(raised.value)


def test_an_answer_without_a_segment_id_is_an_error():
    with scripted_server() as server:
        server.answer = Answer(200, {"segment": {"name": "VIP"}})

        with pytest.raises(AppAPIError, match="without a segment id"):
            CustomerIOAppClient(APP_KEY, "us", base_url=server.url).create_segment("VIP")


def test_the_key_is_sent_as_a_bearer_token_and_scrubbed_from_echoed_errors():
    with scripted_server() as server:
        server.answer = Answer(400, {"meta": {"error": f"bad request from Bearer {APP_KEY}"}})

        with pytest.raises(AppAPIError) as raised:
            CustomerIOAppClient(APP_KEY, "us", base_url=server.url).create_segment("VIP")

        [received] = server.received
        assert received.headers["Authorization"] == f"Bearer {APP_KEY}"
        assert APP_KEY not in str(raised.value) + raised.value.result.response_text
        assert "[redacted]" in str(raised.value)


def test_a_blank_name_is_refused_without_a_request(cio, app):
    with pytest.raises(ValueError, match="needs a name"):
        app.create_segment("  ")
    assert cio.requests() == []


def test_check_credentials_accepts_the_app_api_key_and_counts_segments(cio, app):
    cio.create_segment(SITE_ID, "Existing")

    check = app.check_credentials()

    assert check.valid and not check.rejected
    assert check.segment_count == 1
    assert [(r.method, r.path) for r in cio.requests(SITE_ID)] == [("GET", "/v1/segments")]


def test_check_credentials_reports_a_rejected_key(cio):
    check = CustomerIOAppClient("appkey-wrong-5566", "us", base_url=cio.url).check_credentials()

    assert check.rejected and not check.valid
    assert "appkey-wrong-5566" not in check.result.error


def test_app_api_hosts_come_from_settings_per_region(settings):
    settings.CUSTOMERIO_APP_US_URL = "http://app-us.example.test/"
    settings.CUSTOMERIO_APP_EU_URL = "http://app-eu.example.test"

    assert CustomerIOAppClient(APP_KEY, "us").base_url == "http://app-us.example.test"
    assert CustomerIOAppClient(APP_KEY, "eu").base_url == "http://app-eu.example.test"


def test_the_client_never_shows_its_key():
    assert APP_KEY not in repr(CustomerIOAppClient(APP_KEY, "us", base_url="http://127.0.0.1:9"))
