"""The stand-in's manual segments, App API, email identifier and `_update`, over real HTTP (SPEC §10, §11)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from cio_standin import Faults, StandinServer, Workspace

AUTH = ("site1", "key-one-secret")
APP_KEY = "app-one-secret"
OTHER_AUTH = ("site2", "key-two-secret")
OTHER_APP_KEY = "app-two-secret"


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    workspaces = [Workspace(*AUTH, app_api_key=APP_KEY), Workspace(*OTHER_AUTH, app_api_key=OTHER_APP_KEY)]
    with StandinServer(workspaces) as server:
        yield server


def identify(cio: StandinServer, identifiers: dict, **attributes: object) -> requests.Response:
    action = {"type": "person", "action": "identify", "identifiers": identifiers, "attributes": attributes}
    return requests.post(f"{cio.url}/api/v2/batch", json={"batch": [action]}, auth=AUTH, timeout=5)


def segment_request(
    cio: StandinServer, segment_id: int | str, operation: str, body: object, id_type: str | None = None,
    auth: tuple[str, str] = AUTH,
) -> requests.Response:
    params = {"id_type": id_type} if id_type else None
    url = f"{cio.url}/api/v1/segments/{segment_id}/{operation}"
    return requests.post(url, json=body, params=params, auth=auth, timeout=5)


def app_post(cio: StandinServer, body: object, key: str | None = APP_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{cio.url}/v1/segments", json=body, headers=headers, timeout=5)


# --- App API -------------------------------------------------------------------------------


def test_the_app_api_creates_a_manual_segment_in_the_workspace_of_its_key(cio):
    response = app_post(cio, {"segment": {"name": "VIP", "description": "very"}})

    assert response.status_code == 200
    segment = response.json()["segment"]
    assert (segment["name"], segment["description"], segment["type"]) == ("VIP", "very", "manual")
    assert isinstance(segment["id"], int) and segment["id"] > 0
    assert [s["id"] for s in cio.segments("site1")] == [segment["id"]]
    assert cio.segments("site2") == []


def test_the_app_api_lists_segments_without_their_members(cio):
    cio.create_segment("site1", "A")

    response = requests.get(f"{cio.url}/v1/segments", headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=5)

    assert response.status_code == 200
    assert [(s["name"], "members" in s) for s in response.json()["segments"]] == [("A", False)]


@pytest.mark.parametrize(
    "key", [None, "wrong-key", AUTH[1]], ids=["no-key", "wrong-key", "the-track-key-is-not-an-app-key"]
)
def test_the_app_api_needs_the_app_api_key(cio, key):
    response = app_post(cio, {"segment": {"name": "VIP"}}, key=key)

    assert response.status_code == 401
    assert cio.segments("site1") == []


def test_basic_auth_does_not_open_the_app_api(cio):
    response = requests.post(f"{cio.url}/v1/segments", json={"segment": {"name": "VIP"}}, auth=AUTH, timeout=5)

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"name": "VIP"}, 'must be {"segment"', id="not-wrapped"),
        pytest.param({"segment": {}}, "segment/name: required", id="no-name"),
        pytest.param({"segment": {"name": "  "}}, "segment/name: required", id="blank-name"),
        pytest.param({"segment": {"name": "VIP", "query": "x"}}, "unknown fields query", id="unknown-field"),
        pytest.param({"segment": {"name": "VIP", "description": 5}}, "description: must be a string", id="bad-desc"),
    ],
)
def test_a_bad_segment_body_is_400_and_creates_nothing(cio, body, message):
    response = app_post(cio, body)

    assert response.status_code == 400
    assert message in response.json()["meta"]["error"]
    assert cio.segments("site1") == []
    assert cio.invalid_requests()[-1].path == "/v1/segments"


# --- add_customers / remove_customers ------------------------------------------------------


def test_add_and_remove_customers_by_id(cio):
    segment_id = cio.create_segment("site1", "VIP")
    identify(cio, {"id": "a"})
    identify(cio, {"id": "b"})

    assert segment_request(cio, segment_id, "add_customers", {"ids": ["a", "b"]}).status_code == 200
    assert cio.segment_members("site1", segment_id) == {"a", "b"}
    assert segment_request(cio, segment_id, "remove_customers", {"ids": ["a"]}, id_type="id").status_code == 200
    assert cio.segment_members("site1", segment_id) == {"b"}


def test_id_type_email_names_people_by_email_in_any_case(cio):
    segment_id = cio.create_segment("site1", "VIP")
    identify(cio, {"email": "Max@Example.com"})
    identify(cio, {"id": "c9"}, email="eve@example.com")

    segment_request(cio, segment_id, "add_customers", {"ids": ["max@example.com", "EVE@example.com"]}, "email")

    assert cio.segment_members("site1", segment_id) == {"Max@Example.com", "c9"}


def test_people_who_do_not_exist_are_not_created_by_a_segment_request(cio):
    segment_id = cio.create_segment("site1", "VIP")

    response = segment_request(cio, segment_id, "add_customers", {"ids": ["ghost"]})

    assert response.status_code == 200
    assert cio.people("site1") == {}
    assert cio.segment_members("site1", segment_id) == set()
    assert cio.requests("site1")[-1].notes == ["ignored 1 ids matching nobody: ghost"]


def test_a_segment_of_another_workspace_is_not_found(cio):
    segment_id = cio.create_segment("site2", "Theirs")

    response = segment_request(cio, segment_id, "add_customers", {"ids": ["a"]})

    assert response.status_code == 404
    assert f"segment {segment_id} not found" in response.json()["meta"]["error"]


@pytest.mark.parametrize(
    ("body", "id_type", "message"),
    [
        pytest.param({"ids": []}, None, "ids", id="no-ids"),
        pytest.param({"ids": ["a"] * 1001}, None, "ids", id="1001-ids"),
        pytest.param({"ids": [7]}, None, "ids/0", id="a-number-is-not-an-id"),
        pytest.param({"customers": ["a"]}, None, "'ids' is a required property", id="no-ids-key"),
        pytest.param({"ids": ["a"]}, "phone", "id_type: 'phone' is not one of id, email, cio_id", id="bad-id-type"),
    ],
)
def test_bodies_and_id_types_are_validated_against_the_openapi_document(cio, body, id_type, message):
    segment_id = cio.create_segment("site1", "VIP")

    response = segment_request(cio, segment_id, "add_customers", body, id_type)

    assert response.status_code == 400
    assert message in response.json()["meta"]["error"]
    assert cio.invalid_requests()[-1].path == f"/api/v1/segments/{segment_id}/add_customers"


def test_exactly_1000_ids_are_valid(cio):
    segment_id = cio.create_segment("site1", "VIP")

    response = segment_request(cio, segment_id, "add_customers", {"ids": [f"p{i}" for i in range(1000)]})

    assert response.status_code == 200


def test_segment_requests_need_the_track_credentials(cio):
    segment_id = cio.create_segment("site1", "VIP")

    assert segment_request(cio, segment_id, "add_customers", {"ids": ["a"]}, auth=("site1", "nope")).status_code == 401


def test_a_faulted_segment_request_changes_nothing(cio):
    segment_id = cio.create_segment("site1", "VIP")
    identify(cio, {"id": "a"})
    cio.set_faults(Faults(share=1.0, statuses=(503,)))

    response = segment_request(cio, segment_id, "add_customers", {"ids": ["a"]})

    assert response.status_code == 503
    assert cio.segment_members("site1", segment_id) == set()


def test_segment_requests_count_against_the_workspace_rate_limit():
    with StandinServer([Workspace(*AUTH, rate_limit=2)]) as cio:
        segment_id = cio.create_segment("site1", "VIP")
        statuses = [segment_request(cio, segment_id, "add_customers", {"ids": ["a"]}).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


# --- people identified by email, and _update ---------------------------------------------


def test_a_person_created_by_email_who_later_gets_an_id_stays_one_person_with_their_segments(cio):
    segment_id = cio.create_segment("site1", "VIP")
    identify(cio, {"email": "max@example.com"}, plan="a")
    segment_request(cio, segment_id, "add_customers", {"ids": ["max@example.com"]}, "email")

    identify(cio, {"id": "c1"}, email="max@example.com", plan="b")

    assert cio.people("site1") == {"c1": {"plan": "b", "email": "max@example.com"}}
    assert cio.segment_members("site1", segment_id) == {"c1"}


def test_v1_with_an_email_in_the_path_finds_the_person_by_email(cio):
    identify(cio, {"id": "c1"}, email="max@example.com")

    response = requests.put(f"{cio.url}/api/v1/customers/MAX%40example.com", json={"plan": "pro"}, auth=AUTH, timeout=5)

    assert response.status_code == 200
    assert cio.people("site1") == {"c1": {"email": "max@example.com", "plan": "pro"}}


def test_v1_update_only_creates_nobody(cio):
    response = requests.put(f"{cio.url}/api/v1/customers/ghost", json={"_update": True}, auth=AUTH, timeout=5)

    assert response.status_code == 200
    assert cio.people("site1") == {}
    assert cio.requests("site1")[-1].notes == ["ghost: no such person; _update is true, so nobody was created"]


def test_update_only_by_email_updates_the_person_with_that_email(cio):
    identify(cio, {"id": "c1"}, email="max@example.com")

    identify(cio, {"email": "max@example.com"}, plan="pro", _update=True)

    assert cio.people("site1") == {"c1": {"email": "max@example.com", "plan": "pro"}}


# --- control API ----------------------------------------------------------------------------


def test_the_control_api_reports_segments_with_their_members(cio):
    created = requests.post(
        f"{cio.url}/_standin/segments", json={"site_id": "site1", "name": "VIP", "description": "d"}, timeout=5
    ).json()
    identify(cio, {"id": "a"})
    segment_request(cio, created["id"], "add_customers", {"ids": ["a"]})

    report = requests.get(f"{cio.url}/_standin/segments", params={"site_id": "site1"}, timeout=5).json()

    assert report["site_id"] == "site1"
    assert [(s["id"], s["name"], s["members"]) for s in report["segments"]] == [(created["id"], "VIP", ["a"])]
    assert requests.get(f"{cio.url}/_standin/stats", timeout=5).json()["workspaces"]["site1"]["segments"] == 1


def test_the_control_api_counts_people_by_an_attributes_value_and_segments_by_members(cio):
    segment = requests.post(f"{cio.url}/_standin/segments", json={"site_id": "site1", "name": "VIP"}, timeout=5).json()
    identify(cio, {"id": "a"}, **{"In VIP": "true"})
    identify(cio, {"id": "b"}, **{"In VIP": "true"})
    identify(cio, {"id": "c"}, **{"In VIP": "false"})
    identify(cio, {"id": "d"}, plan="pro")
    segment_request(cio, segment["id"], "add_customers", {"ids": ["a", "b"]})

    tally = requests.get(
        f"{cio.url}/_standin/tally", params={"site_id": "site1", "attribute": "In VIP"}, timeout=5
    ).json()
    other = requests.get(f"{cio.url}/_standin/tally", params={"site_id": "site2"}, timeout=5).json()

    assert tally == {"people": 4, "values": {"true": 2, "false": 1}, "segment_members": {str(segment["id"]): 2}}
    assert other == {"people": 0, "values": {}, "segment_members": {}}


def test_the_control_api_refuses_a_segment_for_an_unknown_workspace(cio):
    response = requests.post(f"{cio.url}/_standin/segments", json={"site_id": "nope", "name": "VIP"}, timeout=5)

    assert response.status_code == 400
    assert "no workspace 'nope'" in response.json()["error"]


def test_a_workspace_added_over_the_control_api_can_take_an_app_api_key_that_is_never_shown(cio):
    body = {"site_id": "site3", "api_key": "k3", "app_api_key": "app-three-secret"}

    added = requests.post(f"{cio.url}/_standin/workspaces", json=body, timeout=5)

    assert added.status_code == 200
    assert added.json()["has_app_api_key"] is True
    assert "app-three-secret" not in added.text
    assert "app-three-secret" not in requests.get(f"{cio.url}/_standin/workspaces", timeout=5).text
    assert "app-three-secret" not in repr(cio.workspaces())
    assert app_post(cio, {"segment": {"name": "Theirs"}}, key="app-three-secret").status_code == 200
    assert [s["name"] for s in cio.segments("site3")] == ["Theirs"]


def test_reset_forgets_segments(cio):
    cio.create_segment("site1", "VIP")

    cio.reset()

    assert cio.segments("site1") == []
