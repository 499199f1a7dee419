"""SPEC section 2: which attributes a profile gets, as a table of cases."""

from __future__ import annotations

import pytest

from connections.services.forwarding.attributes import (
    AudienceState,
    ProfileData,
    audience_attribute_name,
    build_identify_attributes,
    segment_membership_value,
    skip_reason,
)

JANE = ProfileData(customer_id="cust-1", email="jane@example.com", first_name="Jane", last_name="Doe")
ANONYMOUS = ProfileData(customer_id="cust-2")
NEW_USERS = AudienceState(audience_id=123, name="New Users", is_member=True)
CHURNED = AudienceState(audience_id=456, name="Churned", is_member=False)
VIP = AudienceState(audience_id=789, name="VIP", is_member=True)


@pytest.mark.parametrize(
    ("audience_ids", "expected"),
    [
        pytest.param([], "", id="no-membership-is-empty-string"),
        pytest.param([123], "'123'", id="one-audience"),
        pytest.param([456, 123, 789], "'123','456','789'", id="sorted-ascending"),
        pytest.param([123, 9, 10], "'9','10','123'", id="numeric-not-lexicographic-order"),
        pytest.param([123, 123, 9, 9], "'9','123'", id="duplicates-once"),
    ],
)
def test_segment_membership_value(audience_ids, expected):
    assert segment_membership_value(audience_ids) == expected


def test_segment_membership_value_takes_any_iterable():
    # Built here, not in the parametrize list: a one-shot iterator there is spent after one run.
    assert segment_membership_value(audience_id for audience_id in (2, 1)) == "'1','2'"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("New Users", "In New Users", id="plain"),
        pytest.param('Café "VIP", 2.0', 'In Café "VIP", 2.0', id="commas-quotes-dots-non-ascii-kept-verbatim"),
        pytest.param("", "In ", id="empty-name"),
    ],
)
def test_audience_attribute_name(name, expected):
    assert audience_attribute_name(name) == expected


@pytest.mark.parametrize(
    ("profile", "toggle_on", "audiences", "expected"),
    [
        pytest.param(
            JANE,
            False,
            [NEW_USERS, CHURNED, VIP],
            {
                "email": "jane@example.com",
                "first_name": "Jane",
                "last_name": "Doe",
                "SegmentMembership": "'123','789'",
            },
            id="toggle-off-lists-member-audiences-only",
        ),
        pytest.param(
            JANE,
            True,
            [NEW_USERS, CHURNED],
            {
                "email": "jane@example.com",
                "first_name": "Jane",
                "last_name": "Doe",
                "In New Users": "true",
                "In Churned": "false",
            },
            id="toggle-on-one-true-false-attribute-per-forwarded-audience",
        ),
        pytest.param(ANONYMOUS, False, [], {"SegmentMembership": ""}, id="toggle-off-no-membership-sends-empty-string"),
        pytest.param(ANONYMOUS, False, [CHURNED], {"SegmentMembership": ""}, id="toggle-off-only-ex-member-is-empty"),
        pytest.param(ANONYMOUS, True, [], {}, id="toggle-on-nothing-forwarded-sends-no-audience-attribute"),
        pytest.param(
            ANONYMOUS,
            False,
            [
                AudienceState(123, "C", True),
                AudienceState(10, "B", True),
                AudienceState(9, "A", True),
                AudienceState(10, "B", True),
            ],
            {"SegmentMembership": "'9','10','123'"},
            id="toggle-off-ascending-numeric-and-deduplicated",
        ),
        pytest.param(
            ANONYMOUS,
            True,
            [AudienceState(5, 'Café "VIP", 2.0', True), AudienceState(6, "Ünïcödé ✓", False)],
            {'In Café "VIP", 2.0': "true", "In Ünïcödé ✓": "false"},
            id="toggle-on-names-with-commas-quotes-dots-non-ascii",
        ),
        pytest.param(
            ANONYMOUS,
            True,
            [AudienceState(2, "Twins", False), AudienceState(1, "Twins", True)],
            {"In Twins": "true"},
            id="toggle-on-two-audiences-sharing-a-name-is-true-when-member-of-either",
        ),
        pytest.param(
            ProfileData(customer_id="c", email="only@example.com"),
            False,
            [],
            {"email": "only@example.com", "SegmentMembership": ""},
            id="empty-names-omitted",
        ),
        pytest.param(
            ProfileData(customer_id="c", first_name="Ann"),
            False,
            [],
            {"first_name": "Ann", "SegmentMembership": ""},
            id="empty-email-and-last-name-omitted",
        ),
        pytest.param(
            ProfileData(customer_id=""),
            False,
            [NEW_USERS],
            {"SegmentMembership": "'123'"},
            id="missing-customer-id-still-computes-attributes",
        ),
    ],
)
def test_build_identify_attributes(profile, toggle_on, audiences, expected):
    attributes = build_identify_attributes(profile, one_attribute_per_audience=toggle_on, forwarded_audiences=audiences)

    assert attributes == expected
    assert list(attributes) == list(expected), "key order is part of the contract"


@pytest.mark.parametrize("toggle_on", [True, False], ids=["toggle-on", "toggle-off"])
def test_every_value_is_a_string(toggle_on):
    attributes = build_identify_attributes(
        JANE, one_attribute_per_audience=toggle_on, forwarded_audiences=[NEW_USERS, CHURNED, VIP]
    )

    assert attributes
    assert all(type(value) is str for value in attributes.values())


def test_toggle_on_key_order_does_not_depend_on_input_order():
    forward = build_identify_attributes(
        ANONYMOUS, one_attribute_per_audience=True, forwarded_audiences=[VIP, NEW_USERS, CHURNED]
    )
    backward = build_identify_attributes(
        ANONYMOUS, one_attribute_per_audience=True, forwarded_audiences=[CHURNED, NEW_USERS, VIP]
    )

    assert list(forward) == list(backward) == ["In New Users", "In Churned", "In VIP"]


def test_toggle_off_never_sends_per_audience_attributes_and_toggle_on_never_sends_segment_membership():
    off = build_identify_attributes(JANE, one_attribute_per_audience=False, forwarded_audiences=[NEW_USERS])
    on = build_identify_attributes(JANE, one_attribute_per_audience=True, forwarded_audiences=[NEW_USERS])

    assert not any(name.startswith("In ") for name in off)
    assert "SegmentMembership" not in on


@pytest.mark.parametrize(
    ("customer_id", "skipped"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("   ", True, id="whitespace-only"),
        pytest.param("cust-1", False, id="present"),
        pytest.param("0", False, id="zero-is-an-id"),
    ],
)
def test_a_profile_without_customer_id_is_skipped_with_a_reason(customer_id, skipped):
    reason = skip_reason(ProfileData(customer_id=customer_id))

    if skipped:
        assert reason is not None and "customer_id" in reason
    else:
        assert reason is None
