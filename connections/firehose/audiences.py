"""The audience messages: `audience_subscription_request` and `audience_membership_change_request`.

What is checked is what the product relies on; unknown fields are ignored, as the protocol
asks. Device and partner identities are never used, so they are not inspected at all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from connections.firehose.envelope import Account, Envelope, parse_account
from connections.firehose.fields import (
    AUDIENCE_ID_MAX,
    AUDIENCE_NAME_MAX,
    CUSTOMER_ID_MAX,
    EMAIL_MAX,
    MPID_MAX,
    NAME_MAX,
    Fields,
    MessageError,
    check_storable,
    json_type,
    shown,
)

SUBSCRIPTION_ACTIONS = ("add", "update", "remove")
MEMBERSHIP_ACTIONS = ("add", "delete", "attribute_update")
ATTRIBUTE_ACTIONS = ("upsert", "delete")

FIRST_NAME_ATTRIBUTE = "$FirstName"
LAST_NAME_ATTRIBUTE = "$LastName"
DESCRIPTION_MAX = 2000
RAW_IDENTITY_MAX = {"customer": CUSTOMER_ID_MAX, "email": EMAIL_MAX}  # raw identities the product stores
NO_LIMIT = sys.maxsize

# The audience subscription setting the registration declares (responses.py): the id of a
# Customer.io manual segment the audience's members are added to. mParticle sends setting
# values as strings; the largest id a PositiveIntegerField holds on every database.
SEGMENT_ID_SETTING = "customerioSegmentId"
SEGMENT_ID_MAX = 2**31 - 1


@dataclass(frozen=True)
class SegmentSetting:
    """What a message says about the Customer.io manual segment of an audience connection."""

    given: bool  # False: the message does not mention it; leave the stored id alone
    segment_id: int | None = None  # None with given=True: cleared


NOT_GIVEN = SegmentSetting(given=False)


@dataclass(frozen=True)
class AudienceSubscriptionRequest:
    envelope: Envelope
    account: Account
    audience_id: int
    audience_name: str
    action: str  # add / update / remove
    audience_subscription_settings: dict[str, str] | None
    audience_description: str | None = None
    previous_audience_subscription_settings: dict[str, str] | None = None
    segment: SegmentSetting = NOT_GIVEN

    @property
    def connection_key(self) -> str:
        return self.account.connection_key


@dataclass(frozen=True)
class UserIdentity:
    type: str
    encoding: str
    value: str


@dataclass(frozen=True)
class UserAttribute:
    key: str
    action: str  # upsert / delete
    value: str | None


@dataclass(frozen=True)
class AudienceChange:
    audience_id: int
    audience_name: str
    action: str  # add / delete / attribute_update
    user_attributes: tuple[UserAttribute, ...]
    segment: SegmentSetting = NOT_GIVEN


@dataclass(frozen=True)
class UserProfile:
    mpid: str | None
    user_identities: tuple[UserIdentity, ...]
    audiences: tuple[AudienceChange, ...]

    def raw_identity(self, identity_type: str) -> str | None:
        """The first non-empty raw identity of this type. Hashed ones are never returned."""
        for identity in self.user_identities:
            if identity.type == identity_type and identity.encoding == "raw" and identity.value:
                return identity.value
        return None

    @property
    def customer_id(self) -> str | None:
        return self.raw_identity("customer")

    @property
    def email(self) -> str | None:
        return self.raw_identity("email")

    def shared_attribute(self, key: str) -> str | None:
        """The latest value of a user attribute across the profile's audiences ("" once deleted), None if absent."""
        found: str | None = None
        for audience in self.audiences:
            for attribute in audience.user_attributes:
                if attribute.key != key:
                    continue
                if attribute.action == "delete":
                    found = ""
                elif attribute.value is not None:
                    found = attribute.value
        return found

    @property
    def first_name(self) -> str | None:
        return self.shared_attribute(FIRST_NAME_ATTRIBUTE)

    @property
    def last_name(self) -> str | None:
        return self.shared_attribute(LAST_NAME_ATTRIBUTE)

    @property
    def memberships(self) -> dict[int, bool]:
        """audience_id -> member or not; `attribute_update` changes no membership."""
        return {a.audience_id: a.action == "add" for a in self.audiences if a.action != "attribute_update"}


@dataclass(frozen=True)
class AudienceMembershipChangeRequest:
    envelope: Envelope
    account: Account
    # None: no `user_profiles` at all, a verification request.
    user_profiles: tuple[UserProfile, ...] | None

    @property
    def connection_key(self) -> str:
        return self.account.connection_key

    @property
    def is_verification(self) -> bool:
        return not self.user_profiles

    def audience_names(self) -> dict[int, str]:
        """audience_id -> name, for the audiences whose membership the message changes."""
        names: dict[int, str] = {}
        for profile in self.user_profiles or ():
            for audience in profile.audiences:
                if audience.action != "attribute_update":
                    names.setdefault(audience.audience_id, audience.audience_name)
        return names

    def segment_settings(self) -> dict[int, int | None]:
        """audience_id -> the manual segment id the message carries for it (None: cleared); the last one wins."""
        found: dict[int, int | None] = {}
        for profile in self.user_profiles or ():
            for audience in profile.audiences:
                if audience.segment.given:
                    found[audience.audience_id] = audience.segment.segment_id
        return found


def parse_subscription(fields: Fields, envelope: Envelope) -> AudienceSubscriptionRequest:
    settings = fields.string_map("audience_subscription_settings", required=False)
    previous = fields.string_map("previous_audience_subscription_settings", required=False)
    return AudienceSubscriptionRequest(
        envelope=envelope,
        account=parse_account(fields.required_object("account")),
        audience_id=audience_id(fields),
        audience_name=fields.string("audience_name", max_length=AUDIENCE_NAME_MAX, allow_empty=False),
        action=fields.choice("action", SUBSCRIPTION_ACTIONS),
        audience_subscription_settings=settings,
        audience_description=fields.string("audience_description", required=False, max_length=DESCRIPTION_MAX),
        previous_audience_subscription_settings=previous,
        segment=segment_setting(settings, fields.at("audience_subscription_settings"), previous),
    )


def parse_membership_change(fields: Fields, envelope: Envelope) -> AudienceMembershipChangeRequest:
    profiles = fields.objects("user_profiles", required=False)
    return AudienceMembershipChangeRequest(
        envelope=envelope,
        account=parse_account(fields.required_object("account")),
        user_profiles=None
        if profiles is None
        else tuple(plain_user_profile(p.data) or _user_profile(p) for p in profiles),
    )


def _plain(value: object, max_length: int) -> bool:
    """A string that needs none of `Fields.string`'s error paths: ASCII, no NUL, not too long."""
    return type(value) is str and value.isascii() and "\x00" not in value and len(value) <= max_length


def plain_user_profile(data: dict) -> UserProfile | None:
    """The user profile of the common, well-formed shape, parsed without `Fields` (most of a message's parsing time).

    None for anything else (a field of another type, a non-ASCII or over-long value, a segment
    setting...): `_user_profile` then parses it, raising the error that names the field. What is
    returned equals what `_user_profile` returns for the same input (a test holds them equal).
    """
    identities = data.get("user_identities")
    parsed_identities = []
    if identities is not None:
        if type(identities) is not list:
            return None
        for item in identities:
            if type(item) is not dict:
                return None
            kind, encoding, value = item.get("type"), item.get("encoding"), item.get("value")
            if not (_plain(kind, NO_LIMIT) and _plain(encoding, NO_LIMIT)):
                return None
            if not _plain(value, RAW_IDENTITY_MAX.get(kind, NO_LIMIT) if encoding == "raw" else NO_LIMIT):
                return None
            parsed_identities.append(UserIdentity(kind, encoding, value))
    mpid = data.get("mpid")
    if type(mpid) is int:
        mpid = str(mpid)  # as `_mpid`: a number means the same person
    if mpid is not None and not _plain(mpid, MPID_MAX):
        return None
    changes = data.get("audiences")
    parsed_changes = []
    if changes is not None:
        if type(changes) is not list:
            return None
        for change in changes:
            if type(change) is not dict:
                return None
            segment = _plain_segment(change.get("audience_subscription_settings"))
            if segment is None:
                return None
            number, name, action = change.get("audience_id"), change.get("audience_name"), change.get("action")
            if not (type(number) is int and 0 < number <= AUDIENCE_ID_MAX and _plain(name, AUDIENCE_NAME_MAX)):
                return None
            if action not in MEMBERSHIP_ACTIONS or type(action) is not str:
                return None
            attributes = change.get("user_attributes")
            parsed_attributes = []
            if attributes is not None:
                if type(attributes) is not list:
                    return None
                for entry in attributes:
                    if type(entry) is not dict:
                        return None
                    key = entry.get("key")
                    if key is None or key == "":
                        continue
                    value, verb = entry.get("value"), entry.get("action")
                    limit = NAME_MAX if key in (FIRST_NAME_ATTRIBUTE, LAST_NAME_ATTRIBUTE) else NO_LIMIT
                    if not (_plain(key, NO_LIMIT) and type(verb) is str and verb in ATTRIBUTE_ACTIONS):
                        return None
                    if value is not None and not _plain(value, limit):
                        return None
                    parsed_attributes.append(UserAttribute(key, verb, value))
            parsed_changes.append(AudienceChange(number, name, action, tuple(parsed_attributes), segment))
    return UserProfile(mpid=mpid or None, user_identities=tuple(parsed_identities), audiences=tuple(parsed_changes))


def segment_setting(
    settings: dict[str, str] | None, path: str, previous: dict[str, str] | None = None
) -> SegmentSetting:
    """The manual segment id in an audience's settings: a positive integer, "" to clear, absent to keep.

    A setting present in `previous` but gone from the current settings was removed in mParticle.
    """
    if settings is None or SEGMENT_ID_SETTING not in settings:
        if settings is not None and previous and previous.get(SEGMENT_ID_SETTING, "").strip():
            return SegmentSetting(given=True, segment_id=None)
        return NOT_GIVEN
    value = settings[SEGMENT_ID_SETTING].strip()
    if not value:
        return SegmentSetting(given=True, segment_id=None)
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= SEGMENT_ID_MAX:
        raise MessageError(
            f"{path}.{SEGMENT_ID_SETTING}",
            f"must be the id of a Customer.io manual segment (a whole number from 1 to {SEGMENT_ID_MAX}), "
            f"got {shown(value)}",
        )
    return SegmentSetting(given=True, segment_id=int(value))


def _plain_segment(settings: object) -> SegmentSetting | None:
    """`segment_setting` of plain settings (strings only); None for anything that needs its error path."""
    if settings is None:
        return NOT_GIVEN
    if type(settings) is not dict or not all(_plain(k, NO_LIMIT) and _plain(v, NO_LIMIT) for k, v in settings.items()):
        return None
    try:
        return segment_setting(settings, "")
    except MessageError:
        return None  # `_user_profile` raises it again, naming the field


def audience_id(fields: Fields) -> int:
    value = fields.integer("audience_id")
    if not 0 < value <= AUDIENCE_ID_MAX:
        raise MessageError(fields.at("audience_id"), f"must be a positive integer up to {AUDIENCE_ID_MAX}, got {value}")
    return value


def _user_profile(fields: Fields) -> UserProfile:
    identities = []
    for item in fields.objects("user_identities", required=False) or ():
        identity = _user_identity(item)
        limit = RAW_IDENTITY_MAX.get(identity.type)
        if limit and identity.encoding == "raw" and len(identity.value) > limit:
            raise MessageError(item.at("value"), f"a raw {identity.type} is at most {limit} characters")
        identities.append(identity)
    return UserProfile(
        mpid=_mpid(fields),
        user_identities=tuple(identities),
        audiences=tuple(_audience_change(a) for a in fields.objects("audiences", required=False) or ()),
    )


def _mpid(fields: Fields) -> str | None:
    value = fields.raw("mpid")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # the protocol sends a string; a number means the same person
    if not isinstance(value, str):
        raise MessageError(fields.at("mpid"), f"must be a string, not {json_type(value)}")
    check_storable(value, fields.at("mpid"))
    if len(value) > MPID_MAX:
        raise MessageError(fields.at("mpid"), f"is at most {MPID_MAX} characters")
    return value or None


def _user_identity(fields: Fields) -> UserIdentity:
    return UserIdentity(type=fields.string("type"), encoding=fields.string("encoding"), value=fields.string("value"))


def _audience_change(fields: Fields) -> AudienceChange:
    settings = fields.string_map("audience_subscription_settings", required=False)
    return AudienceChange(
        audience_id=audience_id(fields),
        audience_name=fields.string("audience_name", max_length=AUDIENCE_NAME_MAX),
        action=fields.choice("action", MEMBERSHIP_ACTIONS),
        user_attributes=tuple(
            a for a in (_user_attribute(f) for f in fields.objects("user_attributes", required=False) or ()) if a
        ),
        segment=segment_setting(settings, fields.at("audience_subscription_settings")),
    )


def _user_attribute(fields: Fields) -> UserAttribute | None:
    """A user attribute change; None for an entry without a key (the official example has one: `{}`)."""
    key = fields.string("key", required=False)
    if not key:
        return None
    action = fields.choice("action", ATTRIBUTE_ACTIONS)
    is_name = key in (FIRST_NAME_ATTRIBUTE, LAST_NAME_ATTRIBUTE)
    value = fields.string("value", required=False, max_length=NAME_MAX if is_name else None)
    return UserAttribute(key=key, action=action, value=value)
