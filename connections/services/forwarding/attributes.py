"""Which Customer.io attributes a profile gets on a connection (SPEC sections 2 and 11).

Pure functions of plain data: no database, no HTTP. The forwarding service loads the
rows, turns them into these dataclasses and asks what to send: who the person is to
Customer.io (`choose_identifier`), which attributes they get (`build_identify_attributes`)
and which manual segments they join or leave (`segment_operations`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from connections.customerio.identifiers import Identifier
from connections.customerio.limits import AttributeValue

SEGMENT_MEMBERSHIP_ATTRIBUTE = "SegmentMembership"
AUDIENCE_ATTRIBUTE_PREFIX = "In "

# Customer.io stores every value we send as a string; booleans and numbers would be
# typed differently in its segment builder, which is not what the seed integration did.
MEMBER_VALUE = "true"
NON_MEMBER_VALUE = "false"

# Customer.io's reserved flag "update existing people only" (v2 identify attributes,
# `_update`): the one value sent as a JSON boolean, because Customer.io reads it as a flag
# and a string "true" is an ordinary attribute that would create the person after all.
UPDATE_ONLY_FLAG = "_update"

MISSING_CUSTOMER_ID_REASON = (
    "profile has no customer_id; Customer.io needs one as the identifier (hashed identities are never used)"
)
MISSING_EMAIL_REASON = "profile has no email; this connection identifies people by email"
MISSING_BOTH_REASON = (
    "profile has neither a customer_id nor an email; this connection identifies people by customer ID, "
    "or by email for people without one"
)
NOT_AN_EMAIL_REASON = (
    "profile's email is not an email address (no @); Customer.io would take it for a customer ID, "
    "and this connection identifies people by email"
)

IDENTIFY_BY_CHOICES = ("customer_id", "customer_id_or_email", "email")

SegmentAction = Literal["add", "remove"]


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


@dataclass(frozen=True)
class SegmentLink:
    """An active subscription on the connection that names a Customer.io manual segment.

    `audience` is whatever key the caller uses for audiences in `memberships` below
    (the database primary key or mParticle's audience id: the rules do not care).
    """

    audience: int
    segment_id: int


class SegmentOperation(NamedTuple):
    segment_id: int
    action: SegmentAction


def skip_reason(profile: ProfileData) -> str | None:
    """Why this profile cannot be forwarded when people are identified by customer ID, or None."""
    identifier = choose_identifier(profile, "customer_id")
    return identifier if isinstance(identifier, str) else None


def choose_identifier(profile: ProfileData, identify_by: str) -> Identifier | str:
    """The identifier to send for `profile` on a connection that identifies people by
    `identify_by` (Connection.identify_by), or the reason the profile is skipped."""
    if identify_by not in IDENTIFY_BY_CHOICES:
        raise ValueError(f"unknown identify_by {identify_by!r}; expected one of {IDENTIFY_BY_CHOICES}")
    # A blank value is no identifier: Customer.io would file everyone under "".
    has_customer_id = bool(profile.customer_id.strip())
    has_email = bool(profile.email.strip())
    if identify_by == "customer_id" or (identify_by == "customer_id_or_email" and has_customer_id):
        return Identifier("id", profile.customer_id) if has_customer_id else MISSING_CUSTOMER_ID_REASON
    if not has_email:
        return MISSING_EMAIL_REASON if identify_by == "email" else MISSING_BOTH_REASON
    if "@" not in profile.email:
        # Customer.io tells an email from an id by its shape (v1 path): without an @ the
        # value would name a person by id, a different person from the one meant.
        return NOT_AN_EMAIL_REASON
    return Identifier("email", profile.email)


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
    segment_membership_always: bool = False,
    segment_membership_audiences: Sequence[AudienceState] | None = None,
    update_existing_only: bool = False,
) -> dict[str, AttributeValue]:
    """The attributes of the identify call for `profile` on one connection.

    `forwarded_audiences` means, with the toggle on, the audiences whose membership is
    being forwarded; with it off, every audience with an active subscription on the
    connection for which the profile has a membership record.

    `segment_membership_always` (toggle on only) adds SegmentMembership as well, computed
    from `segment_membership_audiences`: every audience with an active subscription and a
    membership record, which `forwarded_audiences` is not when the toggle is on (it then
    holds only the audiences being forwarded). `update_existing_only` adds Customer.io's
    `"_update": true` flag, the only value that is not a string.

    Keys come out in a fixed order: identity fields, audience attributes, SegmentMembership,
    then the flag.
    """
    attributes = identity_attributes(profile)
    attributes.update(
        membership_attributes(
            one_attribute_per_audience=one_attribute_per_audience,
            forwarded_audiences=forwarded_audiences,
            segment_membership_always=segment_membership_always,
            segment_membership_audiences=segment_membership_audiences,
            update_existing_only=update_existing_only,
        )
    )
    return attributes


def membership_attributes(
    *,
    one_attribute_per_audience: bool,
    forwarded_audiences: Sequence[AudienceState],
    segment_membership_always: bool = False,
    segment_membership_audiences: Sequence[AudienceState] | None = None,
    update_existing_only: bool = False,
) -> dict[str, AttributeValue]:
    """The part of `build_identify_attributes` that does not depend on who the person is: the
    audience attributes, SegmentMembership and the flag, in that order. People with the same
    membership records get the same (a page of an activation: all of them), so it is computed once."""
    attributes: dict[str, AttributeValue] = {}
    if one_attribute_per_audience:
        attributes.update(_one_attribute_per_audience(forwarded_audiences))
        if segment_membership_always:
            if segment_membership_audiences is None:
                # Falling back to forwarded_audiences would silently list only the audiences
                # that changed, overwriting the person's full membership in Customer.io.
                raise ValueError(
                    "segment_membership_always with one attribute per audience needs segment_membership_audiences "
                    "(every audience with an active subscription and a membership record)"
                )
            attributes[SEGMENT_MEMBERSHIP_ATTRIBUTE] = _segment_membership(segment_membership_audiences)
    else:
        audiences = forwarded_audiences if segment_membership_audiences is None else segment_membership_audiences
        attributes[SEGMENT_MEMBERSHIP_ATTRIBUTE] = _segment_membership(audiences)
    if update_existing_only:
        attributes[UPDATE_ONLY_FLAG] = True
    return attributes


def segment_operations(
    links: Sequence[SegmentLink],
    memberships: Mapping[int, bool],
    forwarded: Iterable[int] | None = None,
) -> list[SegmentOperation]:
    """The manual-segment changes for one profile on one connection (SPEC section 11).

    `links`: the connection's active subscriptions that name a segment. `memberships`: the
    profile's membership records by audience (member or not). `forwarded`: the audiences
    whose membership is being forwarded; None for the full state (resync, identity change,
    retry), which covers every link.

    A member is added, an ex-member (a record saying "not a member") removed; an audience
    the profile never had a record for sends nothing, since there is nothing to undo and the
    person may not exist in Customer.io. Two audiences naming one segment: the person
    belongs in it while a member of either, forwarded or not (as with two audiences sharing
    an attribute name), so leaving one of them never removes a member of the other.
    Sorted by segment id.
    """
    wanted = None if forwarded is None else set(forwarded)
    touched = {
        link.segment_id
        for link in links
        if link.audience in memberships and (wanted is None or link.audience in wanted)
    }
    operations = []
    for segment_id in sorted(touched):
        is_member = any(memberships.get(link.audience) for link in links if link.segment_id == segment_id)
        operations.append(SegmentOperation(segment_id, "add" if is_member else "remove"))
    return operations


def _segment_membership(audiences: Sequence[AudienceState]) -> str:
    return segment_membership_value(audience.audience_id for audience in audiences if audience.is_member)


def identity_attributes(profile: ProfileData) -> dict[str, AttributeValue]:
    """Who the person is, as attributes: email and names, each only when known."""
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
        is_member_by_name[name] = is_member_by_name.get(name) or audience.is_member
    return {name: MEMBER_VALUE if is_member else NON_MEMBER_VALUE for name, is_member in is_member_by_name.items()}
