"""SPEC section 11 as pure rules: the identifier, SegmentMembership always, update-only, manual segments."""

from __future__ import annotations

import itertools

import pytest

from connections.services.forwarding.attributes import (
    MISSING_BOTH_REASON,
    MISSING_CUSTOMER_ID_REASON,
    MISSING_EMAIL_REASON,
    NOT_AN_EMAIL_REASON,
    AudienceState,
    Identifier,
    ProfileData,
    SegmentLink,
    SegmentOperation,
    build_identify_attributes,
    choose_identifier,
    segment_operations,
    skip_reason,
)

BOTH = ProfileData(customer_id="cust-1", email="jane@example.com", first_name="Jane")
ID_ONLY = ProfileData(customer_id="cust-2")
EMAIL_ONLY = ProfileData(customer_id="", email="max@example.com")
BLANK_ID_EMAIL = ProfileData(customer_id="   ", email="max@example.com")
NEITHER = ProfileData(customer_id="", first_name="Nobody")
BAD_EMAIL = ProfileData(customer_id="", email="not-an-address")
WHITESPACE_EMAIL = ProfileData(customer_id="", email="  ")

NEW_USERS = AudienceState(audience_id=123, name="New Users", is_member=True)
CHURNED = AudienceState(audience_id=456, name="Churned", is_member=False)
VIP = AudienceState(audience_id=789, name="VIP", is_member=True)


# --- choose_identifier --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "identify_by", "expected"),
    [
        pytest.param(BOTH, "customer_id", Identifier("id", "cust-1"), id="customer_id/both"),
        pytest.param(ID_ONLY, "customer_id", Identifier("id", "cust-2"), id="customer_id/id-only"),
        pytest.param(EMAIL_ONLY, "customer_id", MISSING_CUSTOMER_ID_REASON, id="customer_id/email-only-skipped"),
        pytest.param(NEITHER, "customer_id", MISSING_CUSTOMER_ID_REASON, id="customer_id/neither-skipped"),
        pytest.param(BOTH, "customer_id_or_email", Identifier("id", "cust-1"), id="or_email/prefers-the-id"),
        pytest.param(ID_ONLY, "customer_id_or_email", Identifier("id", "cust-2"), id="or_email/id-only"),
        pytest.param(
            EMAIL_ONLY, "customer_id_or_email", Identifier("email", "max@example.com"), id="or_email/falls-back"
        ),
        pytest.param(
            BLANK_ID_EMAIL,
            "customer_id_or_email",
            Identifier("email", "max@example.com"),
            id="or_email/blank-id-is-no-id",
        ),
        pytest.param(NEITHER, "customer_id_or_email", MISSING_BOTH_REASON, id="or_email/neither-skipped"),
        pytest.param(BAD_EMAIL, "customer_id_or_email", NOT_AN_EMAIL_REASON, id="or_email/not-an-address-skipped"),
        pytest.param(BOTH, "email", Identifier("email", "jane@example.com"), id="email/both-uses-the-email"),
        pytest.param(EMAIL_ONLY, "email", Identifier("email", "max@example.com"), id="email/email-only"),
        pytest.param(ID_ONLY, "email", MISSING_EMAIL_REASON, id="email/id-only-skipped"),
        pytest.param(WHITESPACE_EMAIL, "email", MISSING_EMAIL_REASON, id="email/blank-email-skipped"),
        pytest.param(BAD_EMAIL, "email", NOT_AN_EMAIL_REASON, id="email/not-an-address-skipped"),
    ],
)
def test_choose_identifier(profile, identify_by, expected):
    assert choose_identifier(profile, identify_by) == expected


def test_the_skip_reason_for_email_says_why_in_words():
    assert choose_identifier(ID_ONLY, "email") == (
        "profile has no email; this connection identifies people by email"
    )


def test_an_unknown_identify_by_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown identify_by 'phone'"):
        choose_identifier(BOTH, "phone")


def test_an_identifier_kind_other_than_id_or_email_is_refused():
    with pytest.raises(ValueError, match="unknown identifier kind"):
        Identifier("cio_id", "abc")  # type: ignore[arg-type]


def test_skip_reason_keeps_the_seed_behaviour():
    assert skip_reason(EMAIL_ONLY) == MISSING_CUSTOMER_ID_REASON
    assert skip_reason(ID_ONLY) is None


# --- build_identify_attributes: toggle x SegmentMembership always x update-only --------------

FORWARDED = [NEW_USERS]  # toggle on: only the audience being forwarded
ALL_RECORDS = [NEW_USERS, CHURNED, VIP]  # every active subscription with a membership record


@pytest.mark.parametrize(
    ("toggle_on", "always", "update_only", "expected"),
    [
        pytest.param(False, False, False, {"email": "jane@example.com", "first_name": "Jane",
                                            "SegmentMembership": "'123','789'"}, id="off"),
        pytest.param(False, True, False, {"email": "jane@example.com", "first_name": "Jane",
                                           "SegmentMembership": "'123','789'"}, id="off+always-changes-nothing"),
        pytest.param(False, False, True, {"email": "jane@example.com", "first_name": "Jane",
                                           "SegmentMembership": "'123','789'", "_update": True}, id="off+update-only"),
        pytest.param(False, True, True, {"email": "jane@example.com", "first_name": "Jane",
                                          "SegmentMembership": "'123','789'", "_update": True},
                     id="off+always+update-only"),
        pytest.param(True, False, False, {"email": "jane@example.com", "first_name": "Jane",
                                           "In New Users": "true"}, id="on"),
        pytest.param(True, True, False, {"email": "jane@example.com", "first_name": "Jane", "In New Users": "true",
                                          "SegmentMembership": "'123','789'"}, id="on+always-lists-every-membership"),
        pytest.param(True, False, True, {"email": "jane@example.com", "first_name": "Jane", "In New Users": "true",
                                          "_update": True}, id="on+update-only"),
        pytest.param(True, True, True, {"email": "jane@example.com", "first_name": "Jane", "In New Users": "true",
                                         "SegmentMembership": "'123','789'", "_update": True},
                     id="on+always+update-only"),
    ],
)
def test_build_identify_attributes_options(toggle_on, always, update_only, expected):
    attributes = build_identify_attributes(
        BOTH,
        one_attribute_per_audience=toggle_on,
        forwarded_audiences=FORWARDED if toggle_on else ALL_RECORDS,
        segment_membership_always=always,
        segment_membership_audiences=ALL_RECORDS if toggle_on else None,
        update_existing_only=update_only,
    )

    assert attributes == expected
    assert list(attributes) == list(expected), "key order is part of the contract"


@pytest.mark.parametrize("toggle_on", [True, False], ids=["toggle-on", "toggle-off"])
def test_update_only_flag_is_the_one_boolean_and_every_other_value_stays_a_string(toggle_on):
    attributes = build_identify_attributes(
        BOTH,
        one_attribute_per_audience=toggle_on,
        forwarded_audiences=ALL_RECORDS,
        update_existing_only=True,
    )

    assert attributes["_update"] is True
    assert all(type(value) is str for name, value in attributes.items() if name != "_update")


def test_without_update_only_no_flag_is_sent():
    attributes = build_identify_attributes(
        BOTH, one_attribute_per_audience=False, forwarded_audiences=ALL_RECORDS, update_existing_only=False
    )

    assert "_update" not in attributes


def test_segment_membership_always_with_the_toggle_on_refuses_to_guess_the_full_membership():
    # forwarded_audiences holds only the audiences that changed: listing those alone would
    # overwrite the person's whole SegmentMembership in Customer.io with part of it.
    with pytest.raises(ValueError, match="segment_membership_audiences"):
        build_identify_attributes(
            BOTH, one_attribute_per_audience=True, forwarded_audiences=FORWARDED, segment_membership_always=True
        )


def test_the_seed_call_signature_still_works():
    attributes = build_identify_attributes(ID_ONLY, one_attribute_per_audience=False, forwarded_audiences=[VIP])

    assert attributes == {"SegmentMembership": "'789'"}


@pytest.mark.parametrize(
    ("profile", "identify_by", "update_only"),
    list(itertools.product([BOTH, ID_ONLY, EMAIL_ONLY, NEITHER], ["customer_id", "customer_id_or_email", "email"],
                           [False, True])),
)
def test_the_identifier_never_changes_the_attributes(profile, identify_by, update_only):
    """The identifier is one more input beside the attributes: a person identified by email still gets
    the same attributes (email included, so Customer.io keeps it as an attribute too)."""
    attributes = build_identify_attributes(
        profile, one_attribute_per_audience=False, forwarded_audiences=ALL_RECORDS, update_existing_only=update_only
    )
    identifier = choose_identifier(profile, identify_by)

    assert ("email" in attributes) == bool(profile.email)
    if isinstance(identifier, Identifier) and identifier.kind == "email":
        assert attributes["email"] == identifier.value
    assert ("_update" in attributes) is update_only


# --- segment_operations ------------------------------------------------------------------

NEW_USERS_SEGMENT = SegmentLink(audience=1, segment_id=70)
CHURNED_SEGMENT = SegmentLink(audience=2, segment_id=80)
VIP_SEGMENT = SegmentLink(audience=3, segment_id=90)
LINKS = [VIP_SEGMENT, NEW_USERS_SEGMENT, CHURNED_SEGMENT]


@pytest.mark.parametrize(
    ("memberships", "forwarded", "expected"),
    [
        pytest.param({1: True}, [1], [(70, "add")], id="a-member-is-added"),
        pytest.param({1: False}, [1], [(70, "remove")], id="an-ex-member-is-removed"),
        pytest.param({1: True, 2: False, 3: True}, [1], [(70, "add")], id="only-the-forwarded-audience"),
        pytest.param({}, [1], [], id="no-record-sends-nothing"),
        pytest.param({1: True}, [4], [], id="an-audience-without-a-segment-sends-nothing"),
        pytest.param(
            {1: True, 2: False, 3: True},
            None,
            [(70, "add"), (80, "remove"), (90, "add")],
            id="full-state-covers-every-linked-audience-with-a-record-sorted-by-segment",
        ),
        pytest.param({2: False}, None, [(80, "remove")], id="full-state-skips-audiences-without-records"),
        pytest.param({1: True, 2: True}, [2, 1], [(70, "add"), (80, "add")], id="several-forwarded"),
    ],
)
def test_segment_operations(memberships, forwarded, expected):
    assert segment_operations(LINKS, memberships, forwarded) == expected


def test_segment_operations_are_named_tuples():
    [operation] = segment_operations([NEW_USERS_SEGMENT], {1: True}, None)

    assert operation == SegmentOperation(segment_id=70, action="add")
    assert (operation.segment_id, operation.action) == (70, "add")


def test_inactive_subscriptions_are_not_links_so_nothing_is_sent_for_them():
    # The caller passes active subscriptions only: deactivation sends nothing.
    assert segment_operations([], {1: True, 2: False}, None) == []


@pytest.mark.parametrize(
    ("memberships", "forwarded", "expected"),
    [
        pytest.param({1: False, 2: True}, [1], [(70, "add")], id="leaving-one-keeps-a-member-of-the-other"),
        pytest.param({1: False, 2: False}, [1], [(70, "remove")], id="leaving-both-removes"),
        pytest.param({1: True, 2: False}, None, [(70, "add")], id="full-state-once-per-segment"),
        pytest.param({2: True}, [1], [], id="no-record-for-the-forwarded-audience"),
    ],
)
def test_two_audiences_naming_one_segment(memberships, forwarded, expected):
    links = [SegmentLink(audience=1, segment_id=70), SegmentLink(audience=2, segment_id=70)]

    assert segment_operations(links, memberships, forwarded) == expected
