"""Bad input gets a 4xx JSON answer naming what is wrong, and changes nothing at all."""

import io
import json

import pytest
from django.test import RequestFactory

from connections.firehose.views import firehose
from tests.support.factories import AudienceFactory, MembershipFactory, SubscriptionFactory
from tests.support.firehose import URL, audience, membership_request, official, row_counts, user_profile

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def existing_data(db):
    """Some state that bad messages must leave alone."""
    SubscriptionFactory(audience=MembershipFactory(audience=AudienceFactory(audience_id=1)).audience)


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    for word in words:
        assert word in error, error


def good_membership_message() -> dict:
    return membership_request(
        user_profile("c1", email="c1@example.com", audiences=[audience(1, "delete"), audience(2, "add")]),
        user_profile("c2", audiences=[audience(3, "add")]),
    )


def with_change(message: dict, path: str, value) -> dict:
    """The message with the field at a dotted path (list indexes as numbers) set, or deleted for `...`."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = message
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return message


INVALID_MEMBERSHIP_FIELDS = [
    ("type", ..., "type: is required"),
    ("id", ..., "id: is required"),
    ("id", "not-a-uuid", "id: must be a UUID"),
    ("id", 12, "id: must be a string"),
    ("timestamp_ms", "yesterday", "timestamp_ms: must be an integer"),
    ("firehose_version", ..., "firehose_version: is required"),
    ("account", ..., "account: is required"),
    ("account.account_id", "123456", "account.account_id: must be an integer"),
    ("account.account_settings", ["a"], "account.account_settings: must be an object"),
    ("user_profiles", {"user_identities": []}, "user_profiles: must be an array"),
    ("user_profiles.0", "c1", "user_profiles[0]: must be an object"),
    ("user_profiles.0.user_identities", "c1", "user_profiles[0].user_identities: must be an array"),
    ("user_profiles.0.user_identities.0.value", ..., "user_profiles[0].user_identities[0].value: is required"),
    ("user_profiles.0.user_identities.0.value", 42, "user_profiles[0].user_identities[0].value: must be a string"),
    ("user_profiles.0.user_identities.0.value", "x" * 256, "user_profiles[0].user_identities[0].value: a raw customer"),
    ("user_profiles.0.user_identities.1.value", "x" * 255, "user_profiles[0].user_identities[1].value: a raw email"),
    ("user_profiles.0.mpid", {"id": 1}, "user_profiles[0].mpid: must be a string"),
    ("user_profiles.0.mpid", "9" * 65, "user_profiles[0].mpid: is at most 64"),
    ("user_profiles.0.audiences", {}, "user_profiles[0].audiences: must be an array"),
    ("user_profiles.0.audiences.1.audience_id", "2", "user_profiles[0].audiences[1].audience_id: must be an integer"),
    ("user_profiles.0.audiences.1.audience_id", 2.0, "user_profiles[0].audiences[1].audience_id: must be an integer"),
    ("user_profiles.0.audiences.1.audience_id", True, "user_profiles[0].audiences[1].audience_id: must be an integer"),
    ("user_profiles.0.audiences.1.audience_id", 0, "user_profiles[0].audiences[1].audience_id: must be a positive"),
    ("user_profiles.0.audiences.1.audience_id", -5, "user_profiles[0].audiences[1].audience_id: must be a positive"),
    ("user_profiles.0.audiences.1.audience_id", 2**63, "user_profiles[0].audiences[1].audience_id: must be a positive"),
    ("user_profiles.0.audiences.1.audience_id", ..., "user_profiles[0].audiences[1].audience_id: is required"),
    ("user_profiles.0.audiences.1.audience_name", "n" * 101, "user_profiles[0].audiences[1].audience_name: is 101"),
    ("user_profiles.0.audiences.1.action", "join", "user_profiles[0].audiences[1].action: unknown action 'join'"),
    ("user_profiles.0.audiences.1.action", ..., "user_profiles[0].audiences[1].action: is required"),
    ("user_profiles.1.audiences.0.user_attributes", "x", "user_profiles[1].audiences[0].user_attributes: must be an"),
    (
        "user_profiles.1.audiences.0.user_attributes",
        [{"key": "$FirstName", "value": "A" * 151, "action": "upsert"}],
        "user_profiles[1].audiences[0].user_attributes[0].value: is 151",
    ),
    (
        "user_profiles.1.audiences.0.user_attributes",
        [{"key": "$FirstName", "value": "A", "action": "merge"}],
        "user_profiles[1].audiences[0].user_attributes[0].action: unknown action 'merge'",
    ),
    (
        "user_profiles.1.user_identities.0.value",
        "c\u00002",
        "user_profiles[1].user_identities[0].value: must not contain a NUL",
    ),
    (
        "user_profiles.1.user_identities.0.value",
        "c\ud8002",
        "user_profiles[1].user_identities[0].value: must not contain an unpaired",
    ),
]


@pytest.mark.parametrize(("path", "value", "error"), INVALID_MEMBERSHIP_FIELDS)
def test_an_invalid_membership_message_is_refused_naming_the_field(post, path, value, error):
    before = row_counts()

    response = post(with_change(good_membership_message(), path, value))

    assert_refused(response, 400, error)
    assert row_counts() == before


def test_a_bad_profile_late_in_a_message_leaves_the_good_ones_unapplied(post):
    message = membership_request(
        *[user_profile(f"c{n}", audiences=[audience(7, "add")]) for n in range(50)],
        user_profile("c50", audiences=[audience(-1, "add")]),
    )
    before = row_counts()

    assert_refused(post(message), 400, "user_profiles[50].audiences[0].audience_id")
    assert row_counts() == before


INVALID_SUBSCRIPTION_FIELDS = [
    ("audience_id", "1234", "audience_id: must be an integer"),
    ("audience_id", 0, "audience_id: must be a positive integer"),
    ("audience_id", ..., "audience_id: is required"),
    ("audience_name", "n" * 101, "audience_name: is 101 characters long; at most 100"),
    ("audience_name", "   ", "audience_name: must not be empty"),
    ("audience_name", ..., "audience_name: is required"),
    ("action", "pause", "action: unknown action 'pause'; expected one of add, update, remove"),
    ("action", ..., "action: is required"),
    ("audience_subscription_settings", {"a": 1}, "audience_subscription_settings.a: must be a string"),
    ("account.account_settings.connectionKey", 5, "account.account_settings.connectionKey: must be a string"),
]


@pytest.mark.parametrize(("path", "value", "error"), INVALID_SUBSCRIPTION_FIELDS)
def test_an_invalid_subscription_message_is_refused_naming_the_field(post, subscription_request, path, value, error):
    before = row_counts()

    response = post(with_change(subscription_request(action="add"), path, value))

    assert_refused(response, 400, error)
    assert row_counts() == before


def test_an_audience_name_of_100_characters_is_accepted(post, subscription_request):
    response = post(subscription_request(audience_id=5, audience_name="é" * 100, action="add"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b"  \n", "the body is empty"),
        (b"[1, 2]", "the body must be a JSON object, not an array"),
        (b'"hello"', "the body must be a JSON object, not a string"),
        (b"null", "the body must be a JSON object, not null"),
        (b'{"type": "audience_membership_change_request", "x": NaN}', "NaN is not valid JSON"),
        (b'{"type": 1' + b"9" * 5000 + b"}", "the body is not valid JSON"),
        (b'{"type": "caf\xe9"}', "the body is not valid UTF-8"),
        (b"\xff\xfe{\x00}\x00", "the body is not valid UTF-8"),
        (b'{"id": "x"}', "type: is required"),
        (b'{"type": ["a"]}', "type: must be a string"),
        (b'{"type": "event_processing_request"}', "type: unsupported message type 'event_processing_request'"),
        (b'{"type": "party_request"}', "type: unsupported message type"),
    ],
)
def test_a_body_that_is_not_a_message_is_refused(post, body, error):
    before = row_counts()

    assert_refused(post(body), 400, error)
    assert row_counts() == before


def test_absurdly_nested_json_is_refused_without_parsing_it(post):
    before = row_counts()
    body = b'{"type": "audience_membership_change_request", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    assert_refused(post(body), 400, "nested deeper than 64 levels")
    assert row_counts() == before


def test_nesting_within_the_limit_is_accepted_and_brackets_inside_strings_do_not_count(post):
    message = good_membership_message()
    message["extra"] = json.loads("[" * 60 + "]" * 60)
    message["user_profiles"][0]["user_identities"][1]["value"] = "[[[[{{{{" * 30

    assert post(message).status_code == 200


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(post, settings):
    settings.FIREHOSE_MAX_BODY_BYTES = 1000
    message = good_membership_message()
    message["padding"] = "x" * 2000
    before = row_counts()

    assert_refused(post(message), 413, "over the 1000 bytes accepted")
    assert row_counts() == before


def test_a_body_longer_than_declared_is_refused_having_read_no_more_than_the_limit(settings, token):
    settings.FIREHOSE_MAX_BODY_BYTES = 1000
    stream = io.BytesIO(json.dumps({**good_membership_message(), "padding": "x" * 1_000_000}).encode())
    request = RequestFactory().post(
        URL, data=b"{}", content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )
    # As a server streaming a body whose size is not declared: only reading tells its size.
    del request.META["CONTENT_LENGTH"]
    request._stream = stream
    before = row_counts()

    response = firehose(request)

    assert_refused(response, 413, "over 1000 bytes")
    assert stream.tell() <= 1001
    assert row_counts() == before


def test_a_content_length_that_is_not_a_number_is_refused(post):
    assert_refused(post(good_membership_message(), CONTENT_LENGTH="12abc"), 400, "Content-Length")


def test_a_body_that_is_not_json_is_refused_by_content_type(post):
    before = row_counts()

    assert_refused(post(json.dumps(good_membership_message()), content_type="text/plain"), 415, "application/json")
    assert_refused(post(b"a=1", content_type="application/x-www-form-urlencoded"), 415, "application/json")
    assert_refused(post(good_membership_message(), content_type="application/json; charset=latin-1"), 415, "UTF-8")
    assert row_counts() == before


def test_a_charset_of_utf_8_is_accepted(post):
    assert post(good_membership_message(), content_type="application/json; charset=UTF-8").status_code == 200


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_methods_other_than_post_are_not_allowed(client, method):
    response = getattr(client, method)(URL)

    assert_refused(response, 405, "use POST")
    assert response["Allow"] == "POST"


def test_unknown_fields_are_ignored(post):
    message = good_membership_message()
    message["brand_new_field"] = {"anything": [1, 2, 3]}
    message["user_profiles"][0]["favourite_colour"] = "green"
    message["user_profiles"][0]["audiences"][0]["future_flag"] = True

    assert post(message).status_code == 200


def test_a_user_attribute_without_a_key_is_ignored_as_in_the_official_example(post):
    official_profile = official("AudienceMembershipChangeRequest")["user_profiles"][0]
    assert {} in official_profile["audiences"][1]["user_attributes"]

    assert post(membership_request(official_profile)).status_code == 200
