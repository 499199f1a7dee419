"""Which Customer.io attributes a profile gets on a connection (SPEC section 2).

Pure functions of plain data: no database, no HTTP. The forwarding service loads the
rows, turns them into these dataclasses and asks what to send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SEGMENT_MEMBERSHIP_ATTRIBUTE = "SegmentMembership"
AUDIENCE_ATTRIBUTE_PREFIX = "In "

# Customer.io stores every value we send as a string; booleans and numbers would be
# typed differently in its segment builder, which is not what the seed integration did.
MEMBER_VALUE = "true"
NON_MEMBER_VALUE = "false"

MISSING_CUSTOMER_ID_REASON = (
    "profile has no customer_id; Customer.io needs one as the identifier (hashed identities are never used)"
)


@dataclass(frozen=True)
class ProfileData:
    customer_id: str  # "" when the source system gave no raw customer id
    email: str = ""
    first_name: str = ""
    last_name: str = ""


@dataclass(frozen=True)
class AudienceState:
    audience_id: int
    name: str
    is_member: bool


def skip_reason(profile: ProfileData) -> str | None:
    """Why this profile cannot be forwarded at all, or None when it can."""
    if not profile.customer_id.strip():
        return MISSING_CUSTOMER_ID_REASON
    return None


def segment_membership_value(member_audience_ids: Iterable[int]) -> str:
    """`'9','10','123'`: quoted ids, ascending numerically, no duplicates, "" for none."""
    return ",".join(f"'{audience_id}'" for audience_id in sorted(set(member_audience_ids)))


def audience_attribute_name(audience_name: str) -> str:
    return f"{AUDIENCE_ATTRIBUTE_PREFIX}{audience_name}"


def build_identify_attributes(
    profile: ProfileData,
    *,
    one_attribute_per_audience: bool,
    forwarded_audiences: Sequence[AudienceState],
) -> dict[str, str]:
    """The attributes of the identify call for `profile` on one connection.

    `forwarded_audiences` means, with the toggle on, the audiences whose membership is
    being forwarded; with it off, every audience with an active subscription on the
    connection for which the profile has a membership record.
    Keys come out in a fixed order: identity fields, then audience attributes.
    """
    attributes = _identity_attributes(profile)
    if one_attribute_per_audience:
        attributes.update(_one_attribute_per_audience(forwarded_audiences))
    else:
        attributes[SEGMENT_MEMBERSHIP_ATTRIBUTE] = segment_membership_value(
            audience.audience_id for audience in forwarded_audiences if audience.is_member
        )
    return attributes


def _identity_attributes(profile: ProfileData) -> dict[str, str]:
    # Unknown fields are left out rather than sent empty, so that a source that never
    # knew a name cannot blank out one Customer.io already has.
    identity = {
        "email": profile.email,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
    }
    return {name: value for name, value in identity.items() if value}


def _one_attribute_per_audience(audiences: Sequence[AudienceState]) -> dict[str, str]:
    # Audience names are not unique, so two audiences can map to one attribute name.
    # Membership in either makes it "true": reporting "false" for a person who is in
    # an audience of that name would be the worse lie. Sorting by id keeps the key
    # order independent of how the caller happened to query the rows.
    is_member_by_name: dict[str, bool] = {}
    for audience in sorted(audiences, key=lambda audience: audience.audience_id):
        name = audience_attribute_name(audience.name)
        is_member_by_name[name] = is_member_by_name.get(name, False) or audience.is_member
    return {name: MEMBER_VALUE if is_member else NON_MEMBER_VALUE for name, is_member in is_member_by_name.items()}
