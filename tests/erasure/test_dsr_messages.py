"""dsr_processing_request: the official sample, idempotency, unknown people, bad messages (SPEC sections 5, 12)."""

import copy
import json
import uuid

import pytest
from django.test import override_settings

from connections.models import ErasureRecord, FirehoseMessage, Profile
from tests.support.erasure import CUSTOMER_ID, EMAIL, dsr_message, forwarded_person, post_dsr
from tests.support.factories import ConnectionFactory, ProfileFactory
from tests.support.firehose import official, row_counts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _applied_in_the_request():
    """These tests read what a DSR did right after its answer: FIREHOSE_APPLY=request, so the answer means the changes
    are made (the worker's order and timing: tests/firehose/test_apply_in_worker.py, test_parallel_applier.py)."""
    with override_settings(FIREHOSE_APPLY="request"):
        yield


def test_the_official_sample_is_accepted_and_answered_with_the_envelope_alone():
    request = official("DsrProcessingRequest")

    response = post_dsr(request)

    assert response.status_code == 200, response.content
    body = response.json()
    expected = official("DsrProcessingResponse")
    assert set(body) == set(expected)
    assert body["type"] == "dsr_processing_response" and body["firehose_version"] == request["firehose_version"]
    assert uuid.UUID(body["id"]) and body["id"] != request["id"]


def test_the_registration_declares_dsr_processing(client):
    body = client.post(
        "/api/mparticle/firehose", official("ModuleRegistrationRequest"), content_type="application/json"
    ).json()

    registration = body["dsr_processing_registration"]
    assert registration["supported_dsr_types"] == ["erasure"]
    assert [s["id"] for s in registration["account_settings"]] == ["connectionKey"]


def test_a_person_is_matched_by_email_in_any_case(workspace_connection):
    forwarded_person(workspace_connection("site-us"))

    assert post_dsr(dsr_message(customer_id=None, email=EMAIL.upper())).status_code == 200

    assert not Profile.objects.exists()
    assert ErasureRecord.objects.get().matched_on == "email"


def test_a_person_is_matched_by_controller_customer_id(workspace_connection):
    forwarded_person(workspace_connection("site-us"))
    ProfileFactory(customer_id="someone-else")

    assert post_dsr(dsr_message(email=None)).status_code == 200

    assert list(Profile.objects.values_list("customer_id", flat=True)) == ["someone-else"]


def test_a_dsr_for_an_unknown_person_is_answered_and_changes_nothing(workspace_connection):
    forwarded_person(workspace_connection("site-us"))
    before = row_counts()

    response = post_dsr(dsr_message(customer_id="never-seen", email="nobody@example.com"))

    assert response.status_code == 200
    after = row_counts()
    assert after.pop("connections.FirehoseMessage") == before.pop("connections.FirehoseMessage") + 1
    after.pop("connections.InboundToken"), before.pop("connections.InboundToken")  # the helper's token
    assert after == before


def test_the_same_subject_request_sent_again_with_a_new_message_id_changes_nothing(workspace_connection):
    forwarded_person(workspace_connection("site-us"))
    first = dsr_message()
    assert post_dsr(first).status_code == 200
    ProfileFactory(customer_id=CUSTOMER_ID)  # the person came back since
    before = row_counts()

    again = dsr_message() | {"subject_request_id": first["subject_request_id"]}
    assert post_dsr(again).status_code == 200

    after = row_counts()
    assert after.pop("connections.FirehoseMessage") == before.pop("connections.FirehoseMessage") + 1
    after.pop("connections.InboundToken"), before.pop("connections.InboundToken")
    assert after == before
    assert ErasureRecord.objects.count() == 1
    assert Profile.objects.filter(customer_id=CUSTOMER_ID).exists()  # the request was honoured once, then


def test_a_dsr_naming_a_known_connection_is_accepted():
    connection = ConnectionFactory()
    ProfileFactory(customer_id=CUSTOMER_ID)
    message = dsr_message(account={"account_id": 1, "account_settings": {"connectionKey": connection.connection_key}})

    assert post_dsr(message).status_code == 200
    assert not Profile.objects.exists()


def broken(change) -> dict:  # type: ignore[no-untyped-def]
    message = dsr_message()
    change(message)
    return message


BAD = {
    "unknown connection key": (
        lambda m: m.update(account={"account_id": 1, "account_settings": {"connectionKey": "no-such-key"}}),
        "account.account_settings.connectionKey: no connection has this Connection Key; copy it from the "
        "connection's page in cioaudience",
    ),
    "account without a key": (
        lambda m: m.update(account={"account_id": 1, "account_settings": {}}),
        "account.account_settings.connectionKey: is required: the Connection Key setting of the mParticle output "
        "(shown on the connection's page)",
    ),
    "another request type": (
        lambda m: m.update(subject_request_type="portability"),
        "subject_request_type: unknown subject request type 'portability'; expected one of erasure",
    ),
    "no request id": (lambda m: m.pop("subject_request_id"), "subject_request_id: is required"),
    "blank request id": (lambda m: m.update(subject_request_id=" "), "subject_request_id: must not be empty"),
    "no identities": (lambda m: m.pop("subject_identities"), "subject_identities: is required"),
    "identities not an object": (
        lambda m: m.update(subject_identities=["jane@example.com"]),
        "subject_identities: must be an object, not an array",
    ),
    "a hashed email": (
        lambda m: m["subject_identities"]["email"].update(encoding="sha256"),
        "subject_identities.email.encoding: must be 'raw', got 'sha256'",
    ),
    "an email that is a number": (
        lambda m: m["subject_identities"]["email"].update(value=42),
        "subject_identities.email.value: must be a string, not a number",
    ),
    "an empty customer id": (
        lambda m: m["subject_identities"]["controller_customer_id"].update(value=""),
        "subject_identities.controller_customer_id.value: must not be empty",
    ),
    "a time that is not one": (
        lambda m: m.update(submitted_time="yesterday"),
        "submitted_time: must be an ISO 8601 time or seconds since 1970, got 'yesterday'",
    ),
    "an unknown regulation": (
        lambda m: m.update(regulation="hipaa"),
        "regulation: unknown regulation 'hipaa'; expected one of unknown, ccpa, gdpr",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_dsr_is_refused_with_the_reason_and_changes_nothing(case, workspace_connection):
    forwarded_person(workspace_connection("site-us"))
    change, error = BAD[case]
    message = broken(change)
    before = row_counts()

    response = post_dsr(json.dumps(message).encode())

    assert response.status_code == 400, case
    assert response.json()["error"] == error
    after = row_counts()
    after.pop("connections.InboundToken"), before.pop("connections.InboundToken")
    assert after == before
    assert not FirehoseMessage.objects.exists()


def test_an_iso_submitted_time_and_unused_identity_types_are_accepted():
    ProfileFactory(customer_id=CUSTOMER_ID)
    message = dsr_message(submitted_time="2021-11-01T15:00:00Z")
    message["subject_identities"]["ios_advertising_id"] = {"encoding": "raw", "value": str(uuid.uuid4())}
    message["extensions"] = copy.deepcopy({"opendsr.mparticle.com": {"skip_waiting_period": False}})

    assert post_dsr(message).status_code == 200
    assert not Profile.objects.exists()


def test_a_dsr_needs_a_token():
    from django.test import Client

    response = Client().post("/api/mparticle/firehose", dsr_message(), content_type="application/json")

    assert response.status_code == 401
