"""The stand-in's delete and suppress (and unsuppress) over real HTTP, and the client methods that call them."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, unquote

import pytest
import requests

from cio_standin import Faults, StandinServer, Workspace
from cio_standin import erasure as standin_erasure
from cio_standin.routes import match
from connections.customerio.client import CustomerIOClient, Outcome

AUTH = ("site1", "key-one-secret")


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    with StandinServer([Workspace(*AUTH)], seed=0) as server:
        yield server


@pytest.fixture
def client(cio: StandinServer) -> CustomerIOClient:
    return CustomerIOClient(*AUTH, "us", base_url=cio.url, timeout=2)


def identify(cio: StandinServer, identifier: str, attributes: dict) -> None:
    url = f"{cio.url}/api/v1/customers/{quote(identifier, safe='')}"
    assert requests.put(url, json=attributes, auth=AUTH, timeout=5).status_code == 200


def batch_identify(cio: StandinServer, identifier: str) -> None:
    body = {"batch": [{"type": "person", "action": "identify", "identifiers": {"id": identifier}, "attributes": {}}]}
    assert requests.post(f"{cio.url}/api/v2/batch", json=body, auth=AUTH, timeout=5).status_code == 200


def test_delete_removes_the_person_and_a_later_identify_creates_them_again(cio, client):
    identify(cio, "p 1/ü", {"email": "p1@example.com"})

    result = client.delete_person("p 1/ü")

    assert (result.outcome, result.http_status) == (Outcome.SUCCEEDED, 200)
    assert cio.people("site1") == {}
    identify(cio, "p 1/ü", {"a": "b"})
    assert cio.people("site1") == {"p 1/ü": {"a": "b"}}


def test_suppress_removes_the_person_and_ignores_later_identifies_of_that_id(cio, client):
    identify(cio, "p1", {"email": "p1@example.com"})

    assert client.suppress_person("p1").outcome is Outcome.SUCCEEDED

    identify(cio, "p1", {"a": "b"})  # answered 200, as Customer.io does, and ignored
    batch_identify(cio, "p1")
    assert cio.people("site1") == {}
    assert standin_erasure.suppressed(cio.state, "site1") == ["p1"]
    control = requests.get(f"{cio.url}/_standin/suppressed", timeout=5).json()
    assert control == {"site_id": "site1", "suppressed": ["p1"]}


def test_suppressing_an_email_removes_the_person_holding_it(cio, client):
    identify(cio, "p1", {"email": "p1@example.com"})
    identify(cio, "p2", {"email": "p2@example.com"})

    client.suppress_person("p1@example.com")

    assert list(cio.people("site1")) == ["p2"]


def test_unsuppress_lets_the_identifier_back_in(cio, client):
    client.suppress_person("p1")

    response = requests.post(f"{cio.url}/api/v1/customers/p1/unsuppress", auth=AUTH, timeout=5)

    assert response.status_code == 200
    identify(cio, "p1", {"a": "b"})
    assert cio.people("site1") == {"p1": {"a": "b"}}


def test_a_body_is_refused_the_operations_define_none(cio):
    response = requests.delete(f"{cio.url}/api/v1/customers/p1", json={"x": 1}, auth=AUTH, timeout=5)

    assert response.status_code == 400
    assert "takes no request body" in response.json()["meta"]["error"]
    [invalid] = cio.invalid_requests()
    assert invalid.method == "DELETE"


def test_wrong_credentials_are_refused_and_change_nothing(cio):
    identify(cio, "p1", {})
    result = CustomerIOClient("site1", "wrong", "us", base_url=cio.url).suppress_person("p1")

    assert (result.outcome, result.http_status) == (Outcome.CREDENTIALS_REJECTED, 401)
    assert "p1" in cio.people("site1")


def test_an_injected_fault_changes_nothing(cio, client):
    identify(cio, "p1", {})
    cio.set_faults(Faults(share=1.0, statuses=(503,)))

    result = client.delete_person("p1")

    assert (result.outcome, result.http_status) == (Outcome.RETRY, 503)
    assert "p1" in cio.people("site1")


def test_other_paths_under_customers_are_not_taken_for_these_calls(cio):
    assert match("POST", "/api/v1/customers/p1/events") is None
    assert match("DELETE", "/api/v1/customers/") is None
    assert match("POST", "/api/v1/customers/a/b/suppress") is None
    route, params = match("POST", "/api/v1/customers/a%2Fb/suppress")
    assert (route.path.endswith("/suppress"), unquote(params["identifier"])) == (True, "a/b")
