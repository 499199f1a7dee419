"""Every message but the registration request needs `Authorization: Token <token>`."""

import pytest
from django.test import Client

from connections.models import InboundToken
from connections.services import tokens
from tests.firehose.builders import URL, audience, membership_request, official, row_counts, user_profile

pytestmark = pytest.mark.django_db


def a_change() -> dict:
    return membership_request(user_profile("c1", audiences=[audience(1, "add")]))


def assert_unauthorized(response, *words: str) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    for word in words:
        assert word in response.json()["error"]


def test_a_message_without_a_token_is_refused_and_changes_nothing(post):
    before = row_counts()

    assert_unauthorized(post(a_change(), auth=None), "Authorization: Token <token>")
    assert row_counts() == before


def test_a_wrong_token_is_refused(post):
    before = row_counts()

    assert_unauthorized(post(a_change(), auth="Token not-the-token"), "invalid or revoked")
    assert row_counts() == before


def test_another_scheme_is_refused(post, token):
    assert_unauthorized(post(a_change(), auth=f"Bearer {token}"), "unsupported Authorization header")
    assert_unauthorized(post(a_change(), auth="Token "), "unsupported Authorization header")


def test_a_revoked_token_is_refused(post, token):
    tokens.revoke(InboundToken.objects.all())
    before = row_counts()

    assert_unauthorized(post(a_change()), "invalid or revoked")
    assert row_counts() == before


def test_a_valid_token_is_accepted_and_its_use_recorded(post):
    response = post(a_change())

    assert response.status_code == 200
    assert InboundToken.objects.get().last_used_at is not None


def test_the_scheme_is_case_insensitive(post, token):
    assert post(a_change(), auth=f"token {token}").status_code == 200


def test_a_subscription_request_needs_a_token_too(post, subscription_request):
    before = row_counts()

    assert_unauthorized(post(subscription_request(action="add"), auth=None))
    assert row_counts() == before


def test_the_registration_request_needs_no_token_and_ignores_a_wrong_one(post):
    assert post(official("ModuleRegistrationRequest"), auth=None).status_code == 200
    assert post(official("ModuleRegistrationRequest"), auth="Token wrong").status_code == 200


def test_a_token_is_never_echoed_in_an_error(post):
    response = post(a_change(), auth="Token s3cr3t-guess")
    assert b"s3cr3t-guess" not in response.content


def test_no_csrf_token_is_needed(token):
    client = Client(enforce_csrf_checks=True)

    response = client.post(URL, data=a_change(), content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200
