"""mParticle's own example messages are accepted and answered as the protocol documents."""

import time
import uuid

import pytest

from connections.models import Audience, FirehoseMessage, Membership, Profile, Subscription
from tests.support.firehose import assert_matches_schema, official, with_connection_key

pytestmark = pytest.mark.django_db


def assert_answers(response, request: dict, expected_type: str) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["type"] == expected_type
    assert body["firehose_version"] == request["firehose_version"]
    assert uuid.UUID(body["id"]).version == 4 and body["id"] != request["id"]
    assert abs(body["timestamp_ms"] - time.time() * 1000) < 60_000
    return body


def test_the_registration_request_is_answered_without_a_token(post):
    request = official("ModuleRegistrationRequest")

    body = assert_answers(post(request, auth=None), request, "module_registration_response")

    assert_matches_schema(body, "ModuleRegistrationResponse")
    assert body["name"] == "cioaudience"
    assert body["sdk_version"] and body["version"] and body["description"]
    assert "event_processing_registration" not in body


def test_the_registration_asks_for_the_raw_customer_id_and_email_and_the_mpid(post):
    permissions = post(official("ModuleRegistrationRequest"), auth=None).json()["permissions"]

    assert permissions["user_identities"] == [
        {"type": "customer", "encoding": "raw", "required": False},
        {"type": "email", "encoding": "raw", "required": False},
    ]
    assert permissions["allow_access_mpid"] is True


def test_the_registration_declares_the_connection_key_setting(post):
    body = post(official("ModuleRegistrationRequest"), auth=None).json()

    [setting] = body["audience_processing_registration"]["account_settings"]
    assert setting["type"] == "text"
    assert setting["id"] == "connectionKey"
    assert setting["name"] == "Connection Key"
    assert setting["required"] is True and setting["confidential"] is False
    assert "connection key" in setting["description"].lower()


def test_the_registration_request_stores_nothing(post):
    post(official("ModuleRegistrationRequest"), auth=None)
    post(official("ModuleRegistrationRequest"), auth=None)
    assert FirehoseMessage.objects.count() == 0


def test_the_subscription_request_subscribes_the_audience_and_echoes_its_settings(post, connection):
    request = official("AudienceSubscriptionRequest")
    # The example leaves the module's own setting out; mParticle sends what registration declared.
    request["account"]["account_settings"]["connectionKey"] = connection.connection_key
    request["audience_subscription_settings"] = {"sample setting": "sample setting value"}

    body = assert_answers(post(request), request, "audience_subscription_response")

    assert_matches_schema(body, "AudienceSubscriptionResponse")
    assert body["audience_subscription_settings"] == {"sample setting": "sample setting value"}
    subscription = Subscription.objects.get()
    assert (subscription.audience.audience_id, subscription.audience.name) == (1234, "New Users Low Engagement")
    assert subscription.connection == connection and subscription.is_active


def test_the_subscription_response_leaves_settings_out_when_none_were_given(post, connection):
    request = official("AudienceSubscriptionRequest")
    request["account"]["account_settings"]["connectionKey"] = connection.connection_key

    body = post(request).json()

    assert_matches_schema(body, "AudienceSubscriptionResponse")
    assert "audience_subscription_settings" not in body


def test_the_membership_change_request_is_applied_with_hashed_identities_unused(post, connection):
    # The example leaves the module's own setting out; mParticle sends what registration declared.
    request = with_connection_key(official("AudienceMembershipChangeRequest"), connection.connection_key)

    body = assert_answers(post(request), request, "audience_membership_change_response")

    assert_matches_schema(body, "AudienceMembershipChangeResponse")
    assert body["suspend_subscription"] is False
    # Only hashed identities: stored by mpid, with no Customer ID or email.
    profile = Profile.objects.get()
    assert (profile.mpid, profile.customer_id, profile.email) == ("12345", "", "")
    memberships = {(m.audience.audience_id, m.is_member) for m in Membership.objects.select_related("audience")}
    assert memberships == {(456, True), (654, False)}  # 789 was an attribute_update
    assert set(Audience.objects.values_list("audience_id", "name")) == {
        (456, "Example Audience Name"),
        (654, "Example Audience Name 4"),
    }
