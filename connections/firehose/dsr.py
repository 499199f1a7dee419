"""`dsr_processing_request`: a data subject request (mParticle's Firehose SDK 2.9.0 and later).

The fields follow the SDK's `dsrprocessing` model: `subject_request_id` (mParticle's id of the
request), `subject_request_type` (only `erasure` exists), `submitted_time` (an instant: seconds
since the epoch, possibly fractional, or an ISO 8601 string), `subject_identities` (a map from an
identity type to `{encoding: "raw", value}`), `api_version` and `regulation`. The official sample
carries no `account`: an erasure is about a person, across every connection. When an account is
given it must name a connection, like every other message that names one.

Only the identity types the product can match are inspected (`controller_customer_id`, matched
against the Customer ID, and `email`); device identities are ignored like elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from connections.firehose.envelope import Account, Envelope, parse_account
from connections.firehose.fields import CUSTOMER_ID_MAX, EMAIL_MAX, Fields, MessageError, json_type, shown

DSR_TYPES = ("erasure",)
REGULATIONS = ("unknown", "ccpa", "gdpr")
SUBJECT_REQUEST_ID_MAX = 128
API_VERSION_MAX = 32

# OpenDSR identity type -> the profile field it matches, and the longest value stored there.
MATCHED_IDENTITIES = {"controller_customer_id": CUSTOMER_ID_MAX, "email": EMAIL_MAX}


@dataclass(frozen=True)
class DsrProcessingRequest:
    envelope: Envelope
    account: Account | None
    subject_request_id: str
    subject_request_type: str
    submitted_time: datetime | None
    customer_id: str | None
    email: str | None
    regulation: str | None
    api_version: str | None

    @property
    def connection_key(self) -> str | None:
        return None if self.account is None else self.account.connection_key


def parse_dsr(fields: Fields, envelope: Envelope) -> DsrProcessingRequest:
    account = fields.object("account", required=False)
    identities = _identities(fields)
    return DsrProcessingRequest(
        envelope=envelope,
        account=None if account is None else parse_account(account),
        subject_request_id=fields.string("subject_request_id", max_length=SUBJECT_REQUEST_ID_MAX, allow_empty=False),
        subject_request_type=fields.choice("subject_request_type", DSR_TYPES, what="subject request type"),
        submitted_time=_instant(fields, "submitted_time"),
        customer_id=identities.get("controller_customer_id"),
        email=identities.get("email"),
        regulation=fields.choice("regulation", REGULATIONS, what="regulation", required=False),
        api_version=fields.string("api_version", required=False, max_length=API_VERSION_MAX),
    )


def _identities(fields: Fields) -> dict[str, str]:
    """The raw values of the identity types the product matches (others are not inspected)."""
    identities = fields.object("subject_identities")
    assert identities is not None
    found: dict[str, str] = {}
    for identity_type, limit in MATCHED_IDENTITIES.items():
        entry = identities.object(identity_type, required=False)
        if entry is None:
            continue
        encoding = entry.string("encoding")
        if encoding != "raw":
            # OpenDSR allows only raw values; a hash could not be matched to anyone here anyway.
            raise MessageError(entry.at("encoding"), f"must be 'raw', got {shown(encoding)}")
        value = entry.string("value", max_length=limit, allow_empty=False)
        found[identity_type] = value
    return found


def _instant(fields: Fields, key: str) -> datetime | None:
    value = fields.raw(key)
    if value is None:
        return None
    path = fields.at(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Jackson writes an Instant as seconds with a fraction; a value past the year 9999 in
        # seconds is read as milliseconds (some senders use them).
        seconds = float(value) / 1000 if value > 253_402_300_799 else float(value)
        if not math.isfinite(seconds) or not 0 <= seconds <= 253_402_300_799:
            raise MessageError(path, f"is not a time: {value}")
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MessageError(path, f"must be an ISO 8601 time or seconds since 1970, got {shown(value)}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise MessageError(path, f"must be a number or a string, not {json_type(value)}")
