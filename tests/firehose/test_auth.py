"""Every message but the registration request needs `Authorization: Token <token>`."""

import io

import pytest
from django.test import Client

from connections.models import InboundToken
from connections.services.ingest import tokens
from tests.support.firehose import URL, audience, membership_request, official, row_counts, user_profile

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


def test_no_csrf_token_is_needed(token, connection):
    client = Client(enforce_csrf_checks=True)

    response = client.post(URL, data=a_change(), content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200


# --- issue 16 item 1: the token is checked before the body is read ------------------------------


class CountingInput(io.BytesIO):
    """A request body stream that remembers how much the view read of it."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def nested_arrays(size: int) -> bytes:
    unit = b"[[[[[[[[[[1]]]]]]]]]],"
    head = b'{"type":"audience_membership_change_request","x":['
    return head + unit * ((size - len(head) - 3) // len(unit)) + b"0]}"


def call_view(body: bytes, authorization: str | None) -> tuple[int, int]:
    """(status, bytes read) for a POST of `body` through Django's WSGI handling, as gunicorn would call it.

    The test client's handler (a WSGIHandler that leaves the test's database connection open).
    """
    from django.test.client import ClientHandler

    stream = CountingInput(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": URL,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": stream,
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    response = ClientHandler()(environ)
    return response.status_code, stream.consumed


def test_a_large_body_without_a_token_is_refused_unread(settings):
    body = nested_arrays(settings.FIREHOSE_MAX_BODY_BYTES)

    status, read = call_view(body, authorization=None)

    assert status == 401
    assert read == 0  # Content-Length says it is no registration request: not a byte is read


def test_a_large_body_with_a_wrong_token_is_refused_unread(settings):
    body = nested_arrays(settings.FIREHOSE_MAX_BODY_BYTES)

    status, read = call_view(body, authorization="Token wrong")

    assert (status, read) == (401, 0)


def test_a_body_just_over_the_small_limit_without_a_token_is_refused(settings):
    body = nested_arrays(settings.FIREHOSE_UNAUTHENTICATED_MAX_BYTES + 100)

    assert call_view(body, authorization=None) == (401, 0)


def test_the_same_large_body_with_a_valid_token_is_read_and_judged(token, settings):
    body = nested_arrays(settings.FIREHOSE_MAX_BODY_BYTES)

    status, read = call_view(body, authorization=f"Token {token}")

    assert (status, read) == (400, len(body))  # nested deeper than allowed: judged only once authenticated


def test_a_small_unauthenticated_body_that_is_not_a_registration_is_refused(post):
    before = row_counts()

    assert_unauthorized(post(a_change(), auth=None), "Authorization: Token <token>")
    assert row_counts() == before


def test_a_registration_request_without_a_token_still_fits_the_small_limit(post, settings):
    request = official("ModuleRegistrationRequest")
    request["padding"] = "x" * (settings.FIREHOSE_UNAUTHENTICATED_MAX_BYTES - 400)  # unknown fields are ignored

    assert post(request, auth=None).status_code == 200
