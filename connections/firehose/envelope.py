"""What every Firehose message carries: its type, id, time and version, and the account it names."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connections.firehose.fields import MESSAGE_ID_MAX, Fields, MessageError, shown

MODULE_REGISTRATION = "module_registration_request"
AUDIENCE_SUBSCRIPTION = "audience_subscription_request"
AUDIENCE_MEMBERSHIP_CHANGE = "audience_membership_change_request"
DSR_PROCESSING = "dsr_processing_request"
REQUEST_TYPES = (MODULE_REGISTRATION, AUDIENCE_SUBSCRIPTION, AUDIENCE_MEMBERSHIP_CHANGE, DSR_PROCESSING)

CONNECTION_KEY_SETTING = "connectionKey"


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

    @property
    def connection_key(self) -> str:
        return self.settings.get(CONNECTION_KEY_SETTING, "")


def message_type(data: Mapping[str, Any]) -> str:
    """The `type` of a decoded message, checked to be one this module handles."""
    value = Fields(data, "").string("type")
    if value not in REQUEST_TYPES:
        expected = ", ".join(REQUEST_TYPES)
        raise MessageError("type", f"unsupported message type {shown(value)}; expected one of {expected}")
    return str(value)


def parse_envelope(fields: Fields) -> Envelope:
    return Envelope(
        type=message_type(fields.data),
        id=_message_id(fields),
        timestamp_ms=fields.integer("timestamp_ms"),
        firehose_version=fields.string("firehose_version", max_length=32),
    )


def _message_id(fields: Fields) -> str:
    value = fields.string("id", max_length=MESSAGE_ID_MAX)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise MessageError(fields.at("id"), f"must be a UUID, got {shown(value)}") from None


def parse_account(account: Fields) -> Account:
    """An account that must name a connection: its Connection Key setting is required.

    mParticle sends every account setting the registration declared, so a message without the
    Connection Key comes from an output that was never set up (or from something else).
    """
    settings = account.string_map("account_settings") or {}
    if not settings.get(CONNECTION_KEY_SETTING, "").strip():
        raise MessageError(
            f"{account.at('account_settings')}.{CONNECTION_KEY_SETTING}",
            "is required: the Connection Key setting of the mParticle output (shown on the connection's page)",
        )
    return Account(account_id=account.integer("account_id"), settings=settings)
