"""The protocol rules on their own, without HTTP or a database."""

import pytest

from connections.firehose import messages
from connections.firehose.messages import MessageError, decode_body, nesting_problem, parse_message
from connections.models import Audience, FirehoseMessage, Profile
from tests.support.firehose import audience, membership_request, user_profile


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"{}", None),
        (b'{"a": [1, {"b": []}]}', None),
        (b'{"a": "[[[[{{{{"}', None),
        (b'{"a": "quote \\" then [[["}', None),
        (b'{"a": "backslash \\\\", "b": [[]]}', None),
        (b"[" * 64 + b"]" * 64, None),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
        (b"[[]" * 70 + b"]" * 70, "nested deeper than 64 levels"),
        (b"[" + b"[]," * 100_000 + b"[]]", None),
        (b'{"a": [}', "brackets do not match"),
    ],
)
def test_nesting_is_judged_without_parsing_and_ignores_brackets_inside_strings(document, problem):
    found = nesting_problem(document)
    assert found == problem if problem is None else problem in found


def test_decoding_a_deep_document_fails_cleanly_rather_than_recursing():
    with pytest.raises(MessageError, match="nested deeper than 64 levels"):
        decode_body(b"[" * 1_000_000)


def test_the_limits_are_those_of_the_database_fields():
    assert Audience._meta.get_field("name").max_length == messages.AUDIENCE_NAME_MAX
    assert Profile._meta.get_field("customer_id").max_length == messages.CUSTOMER_ID_MAX
    assert Profile._meta.get_field("email").max_length == messages.EMAIL_MAX
    assert Profile._meta.get_field("first_name").max_length == messages.NAME_MAX
    assert Profile._meta.get_field("last_name").max_length == messages.NAME_MAX
    assert Profile._meta.get_field("mpid").max_length == messages.MPID_MAX
    assert FirehoseMessage._meta.get_field("message_id").max_length == messages.MESSAGE_ID_MAX


def test_a_profile_reads_its_raw_identities_names_and_memberships():
    attributes = [
        {"key": "$FirstName", "value": "Ada", "action": "upsert"},
        {"key": "$LastName", "value": "Byron", "action": "upsert"},
    ]
    later = [{"key": "$LastName", "value": "Lovelace", "action": "upsert"}]
    message = parse_message(
        membership_request(
            user_profile(
                "c1",
                email="ada@example.com",
                mpid="1",
                audiences=[
                    audience(1, "add", user_attributes=attributes),
                    audience(2, "delete"),
                    audience(3, "attribute_update", user_attributes=later),
                ],
            )
        )
    )

    [profile] = message.user_profiles
    assert (profile.customer_id, profile.email, profile.mpid) == ("c1", "ada@example.com", "1")
    assert (profile.first_name, profile.last_name) == ("Ada", "Lovelace")
    assert profile.memberships == {1: True, 2: False}
    assert message.audience_names() == {1: "Audience 1", 2: "Audience 2"}


def test_a_numeric_mpid_is_read_as_the_same_string():
    message = membership_request(user_profile("c1"))
    message["user_profiles"][0]["mpid"] = -8446
    assert parse_message(message).user_profiles[0].mpid == "-8446"


def test_an_empty_user_profiles_list_is_a_verification_too():
    assert parse_message(membership_request()).is_verification
