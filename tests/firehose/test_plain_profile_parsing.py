"""The fast parse of a user profile (`plain_user_profile`) never differs from the checked one (`_user_profile`).

The fast path takes the common, well-formed shape of a profile without `Fields` (issue 14: it
was most of a message's parsing time) and declines anything else, which the checked path then
parses or refuses naming the field. So for any profile: the fast path declines (None), or it
gives exactly what the checked path gives; and it never accepts what the checked path refuses.
"""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connections.firehose.audiences import _user_profile, plain_user_profile
from connections.firehose.fields import Fields, MessageError
from tests.support.firehose import official

# Values of every JSON type, including the awkward strings (non-ASCII, NUL, surrogate, long).
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "raw", "customer", "email", "add", "delete", "upsert", "attribute_update", "$FirstName"]),
    st.sampled_from(["é", "a\x00b", "\ud800", "x" * 300, "12", "0", " 7 ", "customerioSegmentId"]),
    st.text(max_size=8),
    st.lists(st.none(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=1),
)


def maybe(value):
    """Mostly the well-formed value (so whole profiles often are), sometimes any JSON value."""
    return st.integers(0, 7).flatmap(lambda n: SCALARS if n == 0 else value)


IDENTITY = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "type": maybe(st.sampled_from(["customer", "email", "other"])),
            "encoding": maybe(st.sampled_from(["raw", "sha256"])),
            "value": maybe(st.one_of(st.text(max_size=6), st.just("c" * 256), st.just("e" * 255))),
        },
    )
)
ATTRIBUTE = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "key": maybe(st.sampled_from(["$FirstName", "$LastName", "plan", ""])),
            "action": maybe(st.sampled_from(["upsert", "delete"])),
            "value": maybe(st.one_of(st.text(max_size=6), st.just("n" * 151))),
        },
    )
)
SETTINGS = maybe(
    st.dictionaries(
        st.sampled_from(["customerioSegmentId", "other", "é"]),
        maybe(st.sampled_from(["", "12", "0", "x", " 3 ", "2147483648"])),
        max_size=2,
    )
)
CHANGE = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "audience_id": maybe(st.integers(min_value=-1, max_value=2**63)),
            "audience_name": maybe(st.one_of(st.text(max_size=6), st.just("a" * 101))),
            "action": maybe(st.sampled_from(["add", "delete", "attribute_update"])),
            "user_attributes": maybe(st.lists(ATTRIBUTE, max_size=3)),
            "audience_subscription_settings": SETTINGS,
        },
    )
)
PROFILE = st.fixed_dictionaries(
    {},
    optional={
        "user_identities": maybe(st.lists(IDENTITY, max_size=3)),
        "mpid": maybe(st.one_of(st.integers(min_value=0, max_value=10**70), st.text(max_size=6), st.just("m" * 65))),
        "audiences": maybe(st.lists(CHANGE, max_size=3)),
    },
)


def checked(data):
    try:
        return _user_profile(Fields(data, "user_profiles[0]"))
    except MessageError:
        return MessageError


@settings(max_examples=1500, deadline=None)
@given(PROFILE)
def test_the_fast_parse_declines_or_agrees_with_the_checked_parse(data):
    fast = plain_user_profile(copy.deepcopy(data))

    if fast is not None:
        assert fast == checked(data)


def test_the_official_samples_and_a_typical_profile_take_the_fast_path():
    typical = {
        "user_identities": [
            {"type": "customer", "encoding": "raw", "value": "c-42"},
            {"type": "email", "encoding": "raw", "value": "ada@example.com"},
            {"type": "email", "encoding": "sha256", "value": "ab" * 32},
        ],
        "mpid": "-7193837583934",
        "audiences": [
            {
                "audience_id": 123,
                "audience_name": "New Users",
                "action": "add",
                "audience_subscription_settings": {"customerioSegmentId": "7"},
                "user_attributes": [{"key": "$FirstName", "value": "Ada", "action": "upsert"}, {}],
            }
        ],
    }
    profiles = [*official("AudienceMembershipChangeRequest")["user_profiles"], typical]

    for data in profiles:
        fast = plain_user_profile(data)
        assert fast is not None
        assert fast == checked(data)
    assert plain_user_profile(typical).audiences[0].segment.segment_id == 7


def profile(identities=(), mpid=None, name="A", attributes=(), audience_id=1):
    return {
        "user_identities": [{"type": t, "encoding": "raw", "value": v} for t, v in identities],
        "mpid": mpid,
        "audiences": [
            {"audience_id": audience_id, "audience_name": name, "action": "add", "user_attributes": list(attributes)}
        ],
    }


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        (profile([("customer", "c" * 255)]), True),
        (profile([("customer", "c" * 256)]), False),
        (profile([("email", "e" * 254)]), True),
        (profile([("email", "e" * 255)]), False),
        (profile([("other", "o" * 300)]), True),
        (profile(mpid="m" * 64), True),
        (profile(mpid="m" * 65), False),
        (profile(mpid=10**63), True),
        (profile(mpid=10**64), False),
        (profile(mpid=True), False),
        (profile(name="a" * 100), True),
        (profile(name="a" * 101), False),
        (profile(attributes=[{"key": "$LastName", "value": "n" * 150, "action": "upsert"}]), True),
        (profile(attributes=[{"key": "$LastName", "value": "n" * 151, "action": "upsert"}]), False),
        (profile(attributes=[{"key": "plan", "value": "p" * 151, "action": "upsert"}]), True),
        (profile(attributes=[{"key": "plan", "value": "p", "action": "merge"}]), False),
        (profile(audience_id=2**63 - 1), True),
        (profile(audience_id=2**63), False),
        (profile(audience_id=0), False),
        (profile(audience_id=True), False),
    ],
)
def test_at_each_limit_the_fast_parse_agrees_with_the_checked_parse(data, valid):
    fast = plain_user_profile(data)

    assert (checked(data) is not MessageError) == valid
    assert fast is None if not valid else fast == checked(data)
