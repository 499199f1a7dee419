"""The Customer.io stand-in over real HTTP: endpoints, auth, validation, limits, rate limit,
faults, recording and its control API (SPEC §10)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from cio_standin import Faults, StandinServer, Workspace, contract

AUTH = ("site1", "key-one-secret")
EU_AUTH = ("site-eu", "key-eu-secret")


@pytest.fixture
def cio() -> Iterator[StandinServer]:
    workspaces = [Workspace(*AUTH), Workspace(*EU_AUTH, region="eu", environment_id=7)]
    with StandinServer(workspaces, seed=0) as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def put(cio: StandinServer, identifier: str, body: object, auth: tuple[str, str] | None = AUTH) -> requests.Response:
    url = f"{cio.url}/api/v1/customers/{quote(identifier, safe='')}"
    return requests.put(url, json=body, auth=auth, timeout=5)


def identify(person_id: str, **attributes: object) -> dict:
    return {"type": "person", "action": "identify", "identifiers": {"id": person_id}, "attributes": attributes}


def batch(cio: StandinServer, actions: list, auth: tuple[str, str] | None = AUTH, **kwargs) -> requests.Response:
    return requests.post(f"{cio.url}/api/v2/batch", json={"batch": actions}, auth=auth, timeout=5, **kwargs)


# --- auth ----------------------------------------------------------------------------------


def test_it_rejects_a_wrong_api_key(cio: StandinServer) -> None:
    response = put(cio, "42", {"plan": "pro"}, auth=("site1", "wrong"))

    assert response.status_code == 401
    assert response.json() == {"meta": {"error": "Unauthorized request"}}
    assert cio.people("site1") == {}


def test_it_rejects_missing_credentials(cio: StandinServer) -> None:
    assert put(cio, "42", {"plan": "pro"}, auth=None).status_code == 401
    assert batch(cio, [identify("42")], auth=None).status_code == 401


def test_it_rejects_an_unknown_site_id(cio: StandinServer) -> None:
    assert put(cio, "42", {}, auth=("nobody", AUTH[1])).status_code == 401


def test_one_workspace_key_does_not_open_another(cio: StandinServer) -> None:
    assert put(cio, "42", {}, auth=("site1", EU_AUTH[1])).status_code == 401


def test_it_accepts_credentials_however_the_header_is_spelled(cio: StandinServer) -> None:
    token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    response = requests.put(
        f"{cio.url}/api/v1/customers/42", json={"a": "1"}, headers={"Authorization": f"basic  {token}"}, timeout=5
    )
    assert response.status_code == 200


# --- v1 identify ---------------------------------------------------------------------------


def test_v1_identify_answers_200_with_an_empty_object_and_keeps_the_attributes(cio: StandinServer) -> None:
    response = put(cio, "42", {"email": "ada@example.com", "SegmentMembership": "'123'"})

    assert response.status_code == 200 and response.json() == {}
    assert response.headers["Content-Type"] == "application/json"
    assert cio.people("site1") == {"42": {"email": "ada@example.com", "SegmentMembership": "'123'"}}


def test_v1_identify_merges_into_the_stored_person(cio: StandinServer) -> None:
    put(cio, "42", {"email": "ada@example.com", "In A": "true"})
    put(cio, "42", {"In A": "false", "In B": "true"})

    assert cio.people("site1")["42"] == {"email": "ada@example.com", "In A": "false", "In B": "true"}


def test_people_are_kept_per_workspace(cio: StandinServer) -> None:
    put(cio, "42", {"plan": "us"})
    put(cio, "42", {"plan": "eu"}, auth=EU_AUTH)

    assert cio.people("site1") == {"42": {"plan": "us"}} and cio.people("site-eu") == {"42": {"plan": "eu"}}


def test_it_decodes_the_identifier_from_one_percent_encoded_path_segment(cio: StandinServer) -> None:
    assert put(cio, "a/b c+d@é", {"x": "1"}).status_code == 200

    assert cio.people("site1") == {"a/b c+d@é": {"x": "1"}}
    assert cio.requests()[0].identifiers == ["a/b c+d@é"]


def test_a_path_with_more_segments_is_not_identify(cio: StandinServer) -> None:
    response = requests.put(f"{cio.url}/api/v1/customers/a/b", json={}, auth=AUTH, timeout=5)
    assert response.status_code == 404


def test_it_rejects_an_invalid_v1_body_with_400_saying_what_is_wrong(cio: StandinServer) -> None:
    response = put(cio, "42", {"email": "a@b.c", "score": 1.5})

    assert response.status_code == 400
    assert response.json()["meta"]["error"] == "score: 1.5 is not of any of the types 'string', 'integer', 'boolean'"
    assert cio.people("site1") == {}
    [invalid] = cio.invalid_requests()
    assert invalid.valid is False and invalid.body == {"email": "a@b.c", "score": 1.5} and invalid.status == 400


def test_it_rejects_a_nested_object_value(cio: StandinServer) -> None:
    assert put(cio, "42", {"address": {"city": "Paris"}}).status_code == 400


def test_it_rejects_a_body_that_is_not_json(cio: StandinServer) -> None:
    response = requests.put(f"{cio.url}/api/v1/customers/42", data=b"{nope", auth=AUTH, timeout=5)

    assert response.status_code == 400
    assert response.json()["meta"]["error"].startswith("body is not valid JSON")


def test_it_rejects_a_v1_value_over_1000_bytes_naming_the_limit(cio: StandinServer) -> None:
    response = put(cio, "42", {"SegmentMembership": "'1'," * 300})

    assert response.status_code == 400
    assert "limit of 1000 bytes" in response.json()["meta"]["error"]


def test_it_rejects_an_identifier_over_150_bytes(cio: StandinServer) -> None:
    assert put(cio, "x" * 151, {}).status_code == 400


# --- v2 batch ------------------------------------------------------------------------------


def test_v2_batch_merges_each_identify_into_its_person(cio: StandinServer) -> None:
    put(cio, "1", {"email": "one@example.com"})
    response = batch(cio, [identify("1", SegmentMembership="'7'"), identify("2", SegmentMembership="")])

    assert response.status_code == 200 and response.json() == {}
    assert cio.people("site1") == {
        "1": {"email": "one@example.com", "SegmentMembership": "'7'"},
        "2": {"SegmentMembership": ""},
    }
    assert cio.requests()[-1].identifiers == ["1", "2"]


def test_a_later_action_in_a_batch_wins(cio: StandinServer) -> None:
    batch(cio, [identify("1", a="old"), identify("1", a="new")])
    assert cio.people("site1") == {"1": {"a": "new"}}


def test_a_person_delete_action_removes_the_person(cio: StandinServer) -> None:
    batch(cio, [identify("1", a="1"), identify("2", a="2")])
    batch(cio, [{"type": "person", "action": "delete", "identifiers": {"id": "1"}}])
    assert set(cio.people("site1")) == {"2"}


def test_it_answers_207_for_an_invalid_action_and_applies_the_others(cio: StandinServer) -> None:
    response = batch(cio, [identify("1", a="1"), {**identify("2"), "action": "upsert"}, identify("3", a="3")])

    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert error["batch_index"] == 1 and error["field"] == "action" and error["reason"] == "invalid"
    assert "'upsert' is not a known action" in error["message"]
    assert set(cio.people("site1")) == {"1", "3"}
    assert cio.invalid_requests()[0].errors[0].startswith("batch/1/action:")


def test_it_answers_207_for_an_unknown_identifier_key(cio: StandinServer) -> None:
    response = batch(cio, [{**identify("1"), "identifiers": {"customer_id": "1"}}])

    assert response.status_code == 207 and response.json()["errors"][0]["field"] == "identifiers"


def test_it_answers_207_for_an_oversized_action(cio: StandinServer) -> None:
    big = identify("big", **{f"attr{i}": "x" * 900 for i in range(40)})  # about 36 KB
    response = batch(cio, [identify("small", a="1"), big])

    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert error["batch_index"] == 1 and error["reason"] == "too_large" and "32 KB" in error["message"]
    assert set(cio.people("site1")) == {"small"}


def test_it_refuses_a_batch_of_500_kb_or_more(cio: StandinServer) -> None:
    actions = [identify(str(i), **{f"a{j}": "x" * 900 for j in range(30)}) for i in range(20)]  # about 560 KB

    response = batch(cio, actions)

    assert response.status_code == 413
    assert "500 KB" in response.json()["meta"]["error"]
    assert cio.people("site1") == {}


def test_it_rejects_a_batch_body_without_a_batch_array(cio: StandinServer) -> None:
    response = requests.post(f"{cio.url}/api/v2/batch", json={"actions": []}, auth=AUTH, timeout=5)

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "body: must be a JSON object with a 'batch' array"


# --- region --------------------------------------------------------------------------------


def test_region_answers_the_us_track_url_for_a_us_workspace(cio: StandinServer) -> None:
    response = requests.get(f"{cio.url}/api/v1/accounts/region", auth=AUTH, timeout=5)

    assert response.status_code == 200
    body = response.json()
    assert body["url"] == "https://track.customer.io" and body["region"] == "us"
    assert isinstance(body["environment_id"], int)


def test_region_answers_the_eu_track_url_for_an_eu_workspace(cio: StandinServer) -> None:
    response = requests.get(f"{cio.url}/api/v1/accounts/region", auth=EU_AUTH, timeout=5)

    assert response.json() == {"url": "https://track-eu.customer.io", "region": "eu", "environment_id": 7}


def test_region_rejects_wrong_credentials(cio: StandinServer) -> None:
    assert requests.get(f"{cio.url}/api/v1/accounts/region", auth=("site1", "x"), timeout=5).status_code == 401


# --- anything else -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/api/v1/customers/42"), ("POST", "/api/v1/events"), ("DELETE", "/api/v2/batch")],
)
def test_anything_else_is_a_json_404(cio: StandinServer, method: str, path: str) -> None:
    response = requests.request(method, cio.url + path, auth=AUTH, timeout=5)

    assert response.status_code == 404 and "error" in response.json()["meta"]


# --- rate limit ----------------------------------------------------------------------------


def test_it_answers_429_with_retry_after_above_the_rate_limit(cio: StandinServer, session: requests.Session) -> None:
    cio.add_workspace(Workspace("slow", "slow-key", rate_limit=3))

    statuses = [session.put(f"{cio.url}/api/v1/customers/{i}", json={}, auth=("slow", "slow-key")) for i in range(6)]

    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429, 429]
    assert statuses[3].headers["Retry-After"] == "1"
    assert set(cio.people("slow")) == {"0", "1", "2"}


def test_no_one_second_window_holds_more_accepted_requests_than_the_limit(cio: StandinServer) -> None:
    limit = 25
    cio.add_workspace(Workspace("limited", "limited-key", rate_limit=limit))
    deadline = time.monotonic() + 2.2

    def hammer() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                session.put(f"{cio.url}/api/v1/customers/x", json={}, auth=("limited", "limited-key"), timeout=5)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = sorted(r.monotonic for r in cio.requests("limited") if r.status != 429)
    assert len(accepted) >= 2 * limit  # the limit let requests through again after a second
    for i, start in enumerate(accepted):
        in_window = sum(1 for t in accepted[i:] if t < start + 1.0)
        assert in_window <= limit
    stats = cio.stats()["workspaces"]["limited"]
    assert stats["max_accepted_in_1s"] == limit and stats["max_requests_in_1s"] > limit
    assert stats["by_status"]["429"] > 0


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 500, 503])
def test_a_status_fault_answers_that_status_and_changes_nothing(cio: StandinServer, status: int) -> None:
    cio.set_faults(Faults(share=1.0, statuses=[status]))

    assert put(cio, "42", {"a": "1"}).status_code == status
    assert batch(cio, [identify("43")]).status_code == status
    assert cio.people("site1") == {}
    assert [r.fault for r in cio.requests()] == ["status", "status"]


def test_a_429_fault_carries_retry_after(cio: StandinServer) -> None:
    cio.set_faults(Faults(share=1.0, statuses=[429], retry_after=3))

    response = put(cio, "42", {})

    assert response.status_code == 429 and response.headers["Retry-After"] == "3"


def test_faults_leave_reads_alone(cio: StandinServer) -> None:
    cio.set_faults(Faults(share=1.0, statuses=[500]))
    assert requests.get(f"{cio.url}/api/v1/accounts/region", auth=AUTH, timeout=5).status_code == 200


def test_a_fault_share_hits_about_that_share_and_the_same_ones_for_the_same_seed(
    cio: StandinServer, session: requests.Session
) -> None:
    def run() -> list[int]:
        cio.set_faults(Faults(share=0.3, statuses=[500, 503], seed=11))
        return [session.put(f"{cio.url}/api/v1/customers/{i}", json={}, auth=AUTH).status_code for i in range(200)]

    first, second = run(), run()

    assert first == second
    failed = [s for s in first if s != 200]
    assert 40 <= len(failed) <= 80 and set(failed) == {500, 503}


def test_a_delay_fault_delays_the_answer_but_applies_it(cio: StandinServer) -> None:
    cio.set_faults(Faults(delay_ms=300))

    started = time.monotonic()
    response = put(cio, "42", {"a": "1"})

    assert response.status_code == 200 and time.monotonic() - started >= 0.3
    assert cio.people("site1") == {"42": {"a": "1"}}
    assert cio.requests()[0].fault == "delay"


def test_a_timeout_fault_outlasts_the_client_timeout_and_changes_nothing(cio: StandinServer) -> None:
    cio.set_faults(Faults(timeout_share=1.0, timeout_seconds=1.0))

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.put(f"{cio.url}/api/v1/customers/42", json={}, auth=AUTH, timeout=0.2)

    time.sleep(1.2)  # the stand-in answers 504 once its sleep is over
    assert cio.people("site1") == {}
    [record] = cio.requests()
    assert record.fault == "timeout" and record.status == 504


def test_a_timeout_fault_does_not_hold_up_stop() -> None:
    server = StandinServer([Workspace(*AUTH)], faults=Faults(timeout_share=1.0, timeout_seconds=30)).start()
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(put(server, "42", {}).status_code)
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.2)

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 2
    thread.join(timeout=5)
    assert isinstance(outcome[0], requests.ConnectionError)  # stopped mid-fault: no answer


def test_a_drop_fault_closes_the_connection_without_an_answer(cio: StandinServer) -> None:
    cio.set_faults(Faults(drop_share=1.0))

    with pytest.raises(requests.exceptions.ConnectionError):
        put(cio, "42", {"a": "1"})

    assert cio.people("site1") == {}
    [record] = cio.requests()
    assert record.fault == "drop" and record.status is None
    assert cio.stats()["by_status"] == {"dropped": 1}


def test_a_partial_207_fault_fails_a_share_of_batch_items(cio: StandinServer) -> None:
    cio.set_faults(Faults(partial_207_share=0.5, seed=3))

    response = batch(cio, [identify(str(i), a="1") for i in range(40)])

    assert response.status_code == 207
    failed = {error["batch_index"] for error in response.json()["errors"]}
    assert 10 <= len(failed) <= 30
    assert set(cio.people("site1")) == {str(i) for i in range(40) if i not in failed}
    assert cio.stats()["faults"]["partial_207_items"] == len(failed)
    assert cio.invalid_requests() == []  # the bodies were fine: the failure was injected


def test_faults_can_be_limited_to_one_workspace(cio: StandinServer) -> None:
    cio.set_faults(Faults(share=1.0, statuses=[500], site_id="site-eu"))

    assert put(cio, "42", {}).status_code == 200
    assert put(cio, "42", {}, auth=EU_AUTH).status_code == 500


def test_cleared_faults_stop(cio: StandinServer) -> None:
    cio.set_faults(Faults(share=1.0, statuses=[500]))
    cio.clear_faults()
    assert put(cio, "42", {}).status_code == 200


def test_faults_refuse_shares_that_add_up_to_more_than_one() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        Faults(share=0.6, drop_share=0.6)


def test_faults_can_be_given_at_start() -> None:
    with StandinServer([Workspace(*AUTH)], faults=Faults(share=1.0, statuses=[503])) as server:
        assert put(server, "42", {}).status_code == 503


# --- recording -----------------------------------------------------------------------------


def test_it_records_each_request_without_the_api_key(cio: StandinServer) -> None:
    put(cio, "42", {"a": "1"})
    put(cio, "42", {}, auth=("site1", "wrong"))

    ok, rejected = cio.requests()
    assert (ok.method, ok.path, ok.site_id, ok.identifiers, ok.body, ok.status, ok.valid) == (
        "PUT", "/api/v1/customers/42", "site1", ["42"], {"a": "1"}, 200, True,
    )
    assert ok.wall_time == pytest.approx(time.time(), abs=5) and ok.monotonic <= ok.answered <= time.monotonic()
    assert ok.to_json()["answered"] == ok.answered
    assert rejected.site_id is None and rejected.status == 401
    assert AUTH[1] not in repr(cio.requests()) + json.dumps([r.to_json() for r in cio.requests()])
    assert AUTH[1] not in repr(cio.workspaces())


def test_requests_can_be_read_per_workspace(cio: StandinServer) -> None:
    put(cio, "1", {})
    put(cio, "2", {}, auth=EU_AUTH)
    assert [r.identifiers for r in cio.requests("site-eu")] == [["2"]]


def test_without_record_bodies_it_keeps_records_without_bodies_but_keeps_invalid_ones() -> None:
    with StandinServer([Workspace(*AUTH)], record_bodies=False) as server:
        put(server, "1", {"a": "1"})
        put(server, "2", {"a": 1.5})

        assert [r.body for r in server.requests()] == [None, {"a": 1.5}]


def test_without_recording_it_keeps_counters_and_invalid_requests_only() -> None:
    with StandinServer([Workspace(*AUTH)], record_requests=False) as server:
        put(server, "1", {"a": "1"})
        put(server, "2", {"a": 1.5})

        assert server.requests() == []
        assert len(server.invalid_requests()) == 1
        assert server.stats()["by_status"] == {"200": 1, "400": 1}


def test_its_log_lines_never_hold_the_credentials(caplog: pytest.LogCaptureFixture) -> None:
    token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    malformed = (  # requests the server logs as errors, each carrying credentials
        f"GARBAGE / HTTP/1.1 x\r\nAuthorization: Basic {token}\r\n\r\n",
        f"PUT /api/v1/customers/1 HTTP/1.1\r\nAuthorization: Basic {token}\r\nContent-Length: x\r\n\r\n",
    )
    with (
        caplog.at_level(logging.INFO, logger="cio_standin"),
        StandinServer([Workspace(*AUTH)], log_requests=True) as server,
    ):
        put(server, "42", {})
        put(server, "42", {}, auth=("site1", "wrong-key"))
        for raw in malformed:
            with socket.create_connection((server.host, server.port), timeout=5) as raw_socket:
                raw_socket.sendall(raw.encode())
                assert b" 400 " in raw_socket.recv(4096)

    assert "PUT /api/v1/customers/42 -> 200 site=site1" in caplog.text
    for secret in (AUTH[1], token, "wrong-key", "Authorization"):
        assert secret not in caplog.text


# --- sampling validation -------------------------------------------------------------------


def test_with_validate_share_0_bodies_are_not_validated_but_still_applied() -> None:
    with StandinServer([Workspace(*AUTH)], validate_share=0.0) as server:
        assert put(server, "42", {"score": 1.5}).status_code == 200
        assert server.people("site1") == {"42": {"score": 1.5}}
        assert server.requests()[0].valid is None


def test_validate_share_validates_an_even_sample() -> None:
    with StandinServer([Workspace(*AUTH)], validate_share=0.25) as server:
        statuses = [put(server, str(i), {"score": 1.5}).status_code for i in range(8)]

        assert statuses.count(400) == 2
        assert server.stats()["validated_bodies"] == 2


def test_unvalidated_bodies_still_need_the_shape_it_applies() -> None:
    with StandinServer([Workspace(*AUTH)], validate_share=0.0) as server:
        assert put(server, "42", ["not", "an", "object"]).status_code == 400
        assert batch(server, [5, identify("1")]).status_code == 207


# --- control API ---------------------------------------------------------------------------


def test_control_people_lists_a_workspace_people(cio: StandinServer, session: requests.Session) -> None:
    put(cio, "42", {"a": "1"})

    response = session.get(f"{cio.url}/_standin/people", params={"site_id": "site1"})

    assert response.json() == {"site_id": "site1", "people": {"42": {"a": "1"}}}


def test_control_people_needs_a_site_id_when_there_are_several_workspaces(
    cio: StandinServer, session: requests.Session
) -> None:
    response = session.get(f"{cio.url}/_standin/people")
    assert response.status_code == 400 and "site_id" in response.json()["error"]


def test_control_requests_pages_by_index(cio: StandinServer, session: requests.Session) -> None:
    for i in range(5):
        put(cio, str(i), {})
    put(cio, "eu", {}, auth=EU_AUTH)

    first = session.get(f"{cio.url}/_standin/requests", params={"site_id": "site1", "limit": 3}).json()
    rest = session.get(f"{cio.url}/_standin/requests", params={"site_id": "site1", "since": first["next"]}).json()

    assert [r["identifiers"] for r in first["requests"]] == [["0"], ["1"], ["2"]]
    assert [r["identifiers"] for r in rest["requests"]] == [["3"], ["4"]]
    assert rest["next"] == 6
    assert session.get(f"{cio.url}/_standin/requests", params={"since": 6}).json() == {"requests": [], "next": 6}


def test_control_stats_count_requests_by_status_and_workspace(cio: StandinServer, session: requests.Session) -> None:
    put(cio, "1", {})
    put(cio, "2", {"a": 1.5})
    put(cio, "3", {}, auth=("site1", "wrong"))

    stats = session.get(f"{cio.url}/_standin/stats").json()

    assert stats["requests"] == 3 and stats["by_status"] == {"200": 1, "400": 1, "401": 1}
    assert stats["invalid_bodies"] == 1 and stats["unauthenticated"] == 1
    site = stats["workspaces"]["site1"]
    assert site["requests"] == 2 and site["people"] == 1 and site["max_requests_in_1s"] == 2


def test_control_faults_can_be_set_read_and_cleared(cio: StandinServer, session: requests.Session) -> None:
    answer = session.post(f"{cio.url}/_standin/faults", json={"share": 1, "statuses": [503], "retry_after": 2})

    assert answer.status_code == 200 and answer.json()["statuses"] == [503]
    assert session.get(f"{cio.url}/_standin/faults").json()["share"] == 1
    response = put(cio, "42", {})
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"

    session.delete(f"{cio.url}/_standin/faults")
    assert put(cio, "42", {}).status_code == 200


@pytest.mark.parametrize(
    "faults",
    [{"shares": 1}, {"share": 2}, {"statuses": 500}, {"share": 1, "statuses": [700]}, {"drop_share": "all"}],
)
def test_control_faults_refuse_a_bad_setting(cio: StandinServer, session: requests.Session, faults: dict) -> None:
    response = session.post(f"{cio.url}/_standin/faults", json=faults)

    assert response.status_code == 400 and response.json()["error"]
    assert cio.faults == Faults()


def test_control_workspaces_add_one_and_never_show_keys(cio: StandinServer, session: requests.Session) -> None:
    response = session.post(
        f"{cio.url}/_standin/workspaces",
        json={"site_id": "new", "api_key": "new-secret", "region": "eu", "rate_limit": 10},
    )

    assert response.status_code == 200
    assert put(cio, "1", {}, auth=("new", "new-secret")).status_code == 200
    listed = session.get(f"{cio.url}/_standin/workspaces").text
    assert '"new"' in listed and "new-secret" not in listed and AUTH[1] not in listed


def test_a_replaced_workspace_key_stops_working(cio: StandinServer, session: requests.Session) -> None:
    session.post(f"{cio.url}/_standin/workspaces", json={"site_id": "site1", "api_key": "rotated"})

    assert put(cio, "1", {}).status_code == 401
    assert put(cio, "1", {}, auth=("site1", "rotated")).status_code == 200


def test_control_reset_clears_people_requests_and_faults(cio: StandinServer, session: requests.Session) -> None:
    put(cio, "42", {"a": "1"})
    cio.set_faults(Faults(share=1.0, statuses=[500]))

    assert session.post(f"{cio.url}/_standin/reset").json() == {"ok": True}

    assert cio.people("site1") == {} and cio.requests() == [] and cio.faults == Faults()
    assert cio.stats()["requests"] == 0
    assert put(cio, "42", {}).status_code == 200  # workspaces are kept


def test_a_delayed_write_admitted_before_a_reset_does_not_land_after_it(cio: StandinServer) -> None:
    """A reset forgets everything, writes still in flight too: in the suite, a slow request of one
    test otherwise lands in the next test's fresh stand-in (it did: 20 extra people)."""
    cio.set_faults(Faults(delay_ms=1_000))
    answered: list[int] = []
    writer = threading.Thread(target=lambda: answered.append(put(cio, "slow", {"a": "1"}).status_code))
    writer.start()
    deadline = time.monotonic() + 5
    admitted = lambda: cio.stats()["workspaces"]["site1"]["max_accepted_in_1s"] == 1  # noqa: E731
    while not admitted() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert admitted() and cio.requests() == [], "the write was not admitted, or was answered already"

    cio.reset()
    writer.join(timeout=5)

    assert answered == [200]
    assert cio.people("site1") == {}
    assert put(cio, "fast", {"a": "1"}).status_code == 200  # writes after the reset apply as before
    assert set(cio.people("site1")) == {"fast"}


@pytest.mark.parametrize(
    ("framing", "sent"),
    [("Content-Length: 100", b'{"a": "1"'), ("Transfer-Encoding: chunked", b'64\r\n{"a": "1"')],
    ids=["content-length", "chunked"],
)
def test_a_client_gone_before_its_whole_body_is_not_a_request(cio: StandinServer, framing: str, sent: bytes) -> None:
    """A worker killed while sending: Customer.io sees a broken connection, not an invalid body."""
    token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    head = f"PUT /api/v1/customers/gone HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n{framing}\r\n\r\n"
    with socket.create_connection((cio.host, cio.port), timeout=5) as client:
        client.sendall(head.encode() + sent)
        client.shutdown(socket.SHUT_WR)  # no more is coming
        assert client.recv(1024) == b""  # no answer: the connection is closed

    assert cio.invalid_requests() == [] and cio.requests() == [] and cio.people("site1") == {}
    assert put(cio, "next", {"a": "1"}).status_code == 200  # and the next client is served


def test_control_answers_404_for_an_unknown_endpoint(cio: StandinServer, session: requests.Session) -> None:
    assert session.get(f"{cio.url}/_standin/nothing").status_code == 404


def test_control_requests_are_not_recorded(cio: StandinServer, session: requests.Session) -> None:
    session.get(f"{cio.url}/_standin/stats")
    assert cio.requests() == []


# --- HTTP behaviour ------------------------------------------------------------------------


def test_it_keeps_one_connection_alive_across_requests(cio: StandinServer) -> None:
    connection = http.client.HTTPConnection(cio.host, cio.port, timeout=5)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()}
    for i in range(3):
        connection.request("PUT", f"/api/v1/customers/{i}", body=b"{}", headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b"{}"
        assert response.getheader("Connection") != "close"
    connection.close()
    assert set(cio.people("site1")) == {"0", "1", "2"}


def test_requests_on_a_kept_alive_connection_are_not_slowed_by_nagle(
    cio: StandinServer, session: requests.Session
) -> None:
    session.put(f"{cio.url}/api/v1/customers/warm", json={}, auth=AUTH)
    started = time.monotonic()
    for i in range(50):
        session.put(f"{cio.url}/api/v1/customers/{i}", json={"a": "1"}, auth=AUTH)

    assert time.monotonic() - started < 1.0  # 40 ms each with Nagle + delayed ACK: 2 s


def test_it_reads_a_chunked_body(cio: StandinServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": '
        yield b'"1"}'

    response = requests.put(f"{cio.url}/api/v1/customers/42", data=chunks(), auth=AUTH, timeout=5)

    assert response.status_code == 200 and cio.people("site1") == {"42": {"a": "1"}}


def test_stop_closes_kept_alive_connections() -> None:
    server = StandinServer([Workspace(*AUTH)]).start()
    with requests.Session() as session:
        assert session.put(f"{server.url}/api/v1/customers/1", json={}, auth=AUTH).status_code == 200
        server.stop()

        with pytest.raises(requests.exceptions.ConnectionError):
            session.put(f"{server.url}/api/v1/customers/2", json={}, auth=AUTH, timeout=2)


def test_it_handles_concurrent_clients(cio: StandinServer) -> None:
    def send(n: int) -> None:
        with requests.Session() as session:
            for i in range(25):
                session.post(f"{cio.url}/api/v2/batch", json={"batch": [identify(f"{n}-{i}", a="1")]}, auth=AUTH)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cio.people("site1")) == 200 and cio.stats()["by_status"] == {"200": 200}


# --- value types ---------------------------------------------------------------------------


def test_a_workspace_never_shows_its_api_key() -> None:
    assert "secret" not in repr(Workspace("s", "secret")) and "secret" not in str(Workspace("s", "secret").to_json())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("s:k", Workspace("s", "k")),
        ("s:k:eu", Workspace("s", "k", region="eu")),
        ("s:k:eu:50", Workspace("s", "k", region="eu", rate_limit=50)),
        ("s:k::50", Workspace("s", "k", rate_limit=50)),
        ("s:k:50", Workspace("s", "k", rate_limit=50)),
        ("s:k:eu:50:app-1", Workspace("s", "k", region="eu", rate_limit=50, app_api_key="app-1")),
        ("s:k:::app-1", Workspace("s", "k", app_api_key="app-1")),
    ],
)
def test_a_workspace_reads_from_a_spec(spec: str, expected: Workspace) -> None:
    assert Workspace.parse(spec) == expected


@pytest.mark.parametrize("spec", ["s", "s:", ":k", "s:k:mars", "s:k:eu:fast", "s:k:eu:0", "s:k:eu:1:2:x"])
def test_a_bad_workspace_spec_is_refused_without_echoing_the_key(spec: str) -> None:
    with pytest.raises(ValueError) as raised:
        Workspace.parse(spec)
    assert ":k" not in str(raised.value)


def test_the_limits_match_customer_ios() -> None:
    assert (contract.MAX_BATCH_BYTES, contract.MAX_ACTION_BYTES) == (500 * 1024, 32 * 1024)
