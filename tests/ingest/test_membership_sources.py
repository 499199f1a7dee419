"""Where SegmentMembership and manual-segment membership come from when records are partial."""

from __future__ import annotations

import pytest

from connections.services.forwarding.attributes import (
    AudienceState,
    ProfileData,
    SegmentLink,
    build_identify_attributes,
    segment_operations,
)

PROFILE = ProfileData(customer_id="cust-1")
VIP = AudienceState(audience_id=3, name="VIP", is_member=True)
CHURNED = AudienceState(audience_id=9, name="Churned", is_member=True)


def test_with_the_toggle_off_segment_membership_lists_every_member_audience_given_not_only_the_changed_one():
    attributes = build_identify_attributes(
        PROFILE,
        one_attribute_per_audience=False,
        forwarded_audiences=[VIP],
        segment_membership_audiences=[VIP, CHURNED],
    )

    assert attributes["SegmentMembership"] == "'3','9'"


def test_the_toggle_on_without_the_full_membership_is_refused_with_what_to_pass():
    with pytest.raises(ValueError) as refused:
        build_identify_attributes(
            PROFILE, one_attribute_per_audience=True, forwarded_audiences=[VIP], segment_membership_always=True
        )

    assert str(refused.value) == (
        "segment_membership_always with one attribute per audience needs segment_membership_audiences "
        "(every audience with an active subscription and a membership record)"
    )


def test_an_audience_without_a_record_does_not_keep_the_person_in_a_shared_segment():
    # Audiences 1 and 2 both name segment 70; the person left 1 and never had a record for 2.
    links = [SegmentLink(audience=1, segment_id=70), SegmentLink(audience=2, segment_id=70)]

    assert segment_operations(links, {1: False}, None) == [(70, "remove")]
    assert segment_operations(links, {1: False}, [1]) == [(70, "remove")]
