"""mParticle Firehose messages: the body of a request turned into typed, validated values.

Pure Python (no Django), so the protocol rules can be read and tested on their own. Every
problem is a `MessageError` naming the path of the offending field, e.g.
`user_profiles[3].audiences[0].audience_id: must be a positive integer`.

What is checked is what the product relies on; unknown fields are ignored, as the protocol
asks. Device and partner identities are never used, so they are not inspected at all.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

MAX_DEPTH = 64

# The longest values the database holds (connections.models: Audience.name, Profile.*);
# a test holds these equal to the model fields.
AUDIENCE_NAME_MAX = 100
CUSTOMER_ID_MAX = 255
EMAIL_MAX = 254
NAME_MAX = 150
MPID_MAX = 64
MESSAGE_ID_MAX = 64
AUDIENCE_ID_MAX = 2**63 - 1  # a PostgreSQL bigint

MODULE_REGISTRATION = "module_registration_request"
AUDIENCE_SUBSCRIPTION = "audience_subscription_request"
AUDIENCE_MEMBERSHIP_CHANGE = "audience_membership_change_request"
REQUEST_TYPES = (MODULE_REGISTRATION, AUDIENCE_SUBSCRIPTION, AUDIENCE_MEMBERSHIP_CHANGE)

SUBSCRIPTION_ACTIONS = ("add", "update", "remove")
MEMBERSHIP_ACTIONS = ("add", "delete", "attribute_update")
ATTRIBUTE_ACTIONS = ("upsert", "delete")

CONNECTION_KEY_SETTING = "connectionKey"
FIRST_NAME_ATTRIBUTE = "$FirstName"
LAST_NAME_ATTRIBUTE = "$LastName"

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class MessageError(ValueError):
    """The message is not one the product can accept; `str()` says what and where."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


# --- decoding ---------------------------------------------------------------------------


def nesting_problem(body: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a JSON document cannot be parsed safely (nested too deeply, brackets that do not match), or None.

    No parsing and no recursion, so it is safe on hostile input before `json.loads` (which
    recurses), and only C-speed bytes methods, so it is cheap on any body. Strings are removed
    first (a bracket inside a string nests nothing), leaving the brackets alone; each pass then
    removes every innermost `[]` and `{}` pair. A valid document of depth d is gone after d
    passes; what survives `max_depth` passes is deeper than that, and what a pass cannot shrink
    has brackets that do not match.
    """
    # Escaped backslashes, then escaped quotes, leave only the quotes that delimit strings
    # (left to right, as a parser reads them); every other piece between quotes is a string.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(None, _NOT_BRACKETS)
    if re.search(rb"[\[{]{%d}" % (max_depth + 1), brackets):  # the common attack, found at once
        return f"the JSON is nested deeper than {max_depth} levels"
    for _ in range(max_depth):
        if not brackets:
            return None
        # Both kinds of pair at once (a marker keeps "{[]}" from losing two levels in one pass).
        reduced = brackets.replace(b"[]", b"-").replace(b"{}", b"-").replace(b"-", b"")
        if len(reduced) == len(brackets):
            return "the body is not valid JSON: its brackets do not match"
        brackets = reduced
    return f"the JSON is nested deeper than {max_depth} levels" if brackets else None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def decode_body(body: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object, or a MessageError saying why it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("", f"the body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise MessageError("", "the body is empty; expected a JSON object")
    # A cheap count first: a document with fewer brackets than the limit cannot nest deeper.
    if body.count(b"[") + body.count(b"{") > max_depth and (problem := nesting_problem(body, max_depth)):
        raise MessageError("", problem)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        raise MessageError("", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # a backstop: nesting_problem has judged the depth already
        raise MessageError("", f"the JSON is nested deeper than {max_depth} levels") from None
    if not isinstance(data, dict):
        raise MessageError("", f"the body must be a JSON object, not {_json_type(data)}")
    return data


def message_type(data: Mapping[str, Any]) -> str:
    """The `type` of a decoded message, checked to be one this module handles."""
    value = _Fields(data, "").string("type")
    if value not in REQUEST_TYPES:
        expected = ", ".join(REQUEST_TYPES)
        raise MessageError("type", f"unsupported message type {_shown(value)}; expected one of {expected}")
    return value


# --- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """What every message carries."""

    type: str
    id: str
    timestamp_ms: int
    firehose_version: str


@dataclass(frozen=True)
class Account:
    account_id: int
    settings: dict[str, str]


@dataclass(frozen=True)
class ModuleRegistrationRequest:
    envelope: Envelope


@dataclass(frozen=True)
class AudienceSubscriptionRequest:
    envelope: Envelope
    account: Account
    audience_id: int
    audience_name: str
    action: str  # add / update / remove
    audience_subscription_settings: dict[str, str] | None

    @property
    def connection_key(self) -> str:
        return self.account.settings.get(CONNECTION_KEY_SETTING, "")


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


Message = ModuleRegistrationRequest | AudienceSubscriptionRequest | AudienceMembershipChangeRequest


def parse_message(data: Mapping[str, Any]) -> Message:
    """A decoded body as a typed message, every field the product uses checked."""
    fields = _Fields(data, "")
    kind = message_type(data)
    envelope = Envelope(
        type=kind,
        id=_message_id(fields),
        timestamp_ms=fields.integer("timestamp_ms"),
        firehose_version=fields.string("firehose_version", max_length=32),
    )
    if kind == MODULE_REGISTRATION:
        return ModuleRegistrationRequest(envelope)
    if kind == AUDIENCE_SUBSCRIPTION:
        return AudienceSubscriptionRequest(
            envelope=envelope,
            account=_account(fields, needs_connection_key=True),
            audience_id=_audience_id(fields),
            audience_name=fields.string("audience_name", max_length=AUDIENCE_NAME_MAX, allow_empty=False),
            action=fields.choice("action", SUBSCRIPTION_ACTIONS),
            audience_subscription_settings=fields.string_map("audience_subscription_settings", required=False),
        )
    profiles = fields.objects("user_profiles", required=False)
    return AudienceMembershipChangeRequest(
        envelope=envelope,
        account=_account(fields),
        user_profiles=None if profiles is None else tuple(_user_profile(p) for p in profiles),
    )


# --- the parts --------------------------------------------------------------------------


def _message_id(fields: _Fields) -> str:
    value = fields.string("id", max_length=MESSAGE_ID_MAX)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise MessageError(fields.at("id"), f"must be a UUID, got {_shown(value)}") from None


def _account(fields: _Fields, needs_connection_key: bool = False) -> Account:
    account = fields.object("account")
    settings = account.string_map("account_settings", required=needs_connection_key) or {}
    if needs_connection_key and not settings.get(CONNECTION_KEY_SETTING, "").strip():
        raise MessageError(
            f"{account.at('account_settings')}.{CONNECTION_KEY_SETTING}",
            "is required: the Connection Key setting of the mParticle output (shown on the connection's page)",
        )
    return Account(account_id=account.integer("account_id"), settings=settings)


def _audience_id(fields: _Fields) -> int:
    value = fields.integer("audience_id")
    if not 0 < value <= AUDIENCE_ID_MAX:
        raise MessageError(fields.at("audience_id"), f"must be a positive integer up to {AUDIENCE_ID_MAX}, got {value}")
    return value


def _user_profile(fields: _Fields) -> UserProfile:
    identities = []
    for item in fields.objects("user_identities", required=False) or ():
        identity = _user_identity(item)
        limit = {"customer": CUSTOMER_ID_MAX, "email": EMAIL_MAX}.get(identity.type)
        if limit and identity.encoding == "raw" and len(identity.value) > limit:
            raise MessageError(item.at("value"), f"a raw {identity.type} is at most {limit} characters")
        identities.append(identity)
    return UserProfile(
        mpid=_mpid(fields),
        user_identities=tuple(identities),
        audiences=tuple(_audience_change(a) for a in fields.objects("audiences", required=False) or ()),
    )


def _mpid(fields: _Fields) -> str | None:
    value = fields.raw("mpid")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # the protocol sends a string; a number means the same person
    if not isinstance(value, str):
        raise MessageError(fields.at("mpid"), f"must be a string, not {_json_type(value)}")
    _check_storable(value, fields.at("mpid"))
    if len(value) > MPID_MAX:
        raise MessageError(fields.at("mpid"), f"is at most {MPID_MAX} characters")
    return value or None


def _user_identity(fields: _Fields) -> UserIdentity:
    return UserIdentity(type=fields.string("type"), encoding=fields.string("encoding"), value=fields.string("value"))


def _audience_change(fields: _Fields) -> AudienceChange:
    return AudienceChange(
        audience_id=_audience_id(fields),
        audience_name=fields.string("audience_name", max_length=AUDIENCE_NAME_MAX),
        action=fields.choice("action", MEMBERSHIP_ACTIONS),
        user_attributes=tuple(
            a for a in (_user_attribute(f) for f in fields.objects("user_attributes", required=False) or ()) if a
        ),
    )


def _user_attribute(fields: _Fields) -> UserAttribute | None:
    """A user attribute change; None for an entry without a key (the official example has one: `{}`)."""
    key = fields.string("key", required=False)
    if not key:
        return None
    action = fields.choice("action", ATTRIBUTE_ACTIONS)
    is_name = key in (FIRST_NAME_ATTRIBUTE, LAST_NAME_ATTRIBUTE)
    value = fields.string("value", required=False, max_length=NAME_MAX if is_name else None)
    return UserAttribute(key=key, action=action, value=value)


# --- reading fields with their path ---------------------------------------------------


def _shown(value: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut short: errors never echo a whole body back."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_storable(value: str, path: str) -> None:
    """Refuse what no database can store as text: NUL characters and unpaired surrogates (from `\\ud800`)."""
    if "\x00" in value:
        raise MessageError(path, "must not contain a NUL character (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError(path, "must not contain an unpaired UTF-16 surrogate") from None


class _Fields:
    """A JSON object and where it sits in the message, for error messages that name the field."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def _present(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise MessageError(self.at(key), "is required")
        return value

    def string(self, key: str, required: bool = True, max_length: int | None = None, allow_empty: bool = True) -> Any:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MessageError(self.at(key), f"must be a string, not {_json_type(value)}")
        _check_storable(value, self.at(key))
        if not allow_empty and not value.strip():
            raise MessageError(self.at(key), "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise MessageError(self.at(key), f"is {len(value)} characters long; at most {max_length} are allowed")
        return value

    def integer(self, key: str) -> int:
        value = self._present(key, True)
        if not isinstance(value, int) or isinstance(value, bool):
            raise MessageError(self.at(key), f"must be an integer, not {_json_type(value)}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in allowed:
            raise MessageError(self.at(key), f"unknown action {_shown(value)}; expected one of {', '.join(allowed)}")
        return str(value)

    def object(self, key: str) -> _Fields:
        value = self._present(key, True)
        if not isinstance(value, dict):
            raise MessageError(self.at(key), f"must be an object, not {_json_type(value)}")
        return _Fields(value, self.at(key))

    def objects(self, key: str, required: bool = True) -> list[_Fields] | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise MessageError(self.at(key), f"must be an array, not {_json_type(value)}")
        items = []
        for n, item in enumerate(value):
            if not isinstance(item, dict):
                raise MessageError(f"{self.at(key)}[{n}]", f"must be an object, not {_json_type(item)}")
            items.append(_Fields(item, f"{self.at(key)}[{n}]"))
        return items

    def string_map(self, key: str, required: bool = True) -> dict[str, str] | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise MessageError(self.at(key), f"must be an object, not {_json_type(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise MessageError(f"{self.at(key)}.{name}", f"must be a string, not {_json_type(item)}")
            _check_storable(name, self.at(key))
            _check_storable(item, f"{self.at(key)}.{name}")
        return dict(value)
