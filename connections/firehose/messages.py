"""mParticle Firehose messages: the body of a request turned into typed, validated values.

Pure Python (no Django), so the protocol rules can be read and tested on their own. The
pieces, in the order a body goes through them:

    decoding.py    bytes -> a JSON object (safe on hostile nesting)
    envelope.py    type, id, timestamp, version; the account and its Connection Key
    audiences.py   audience_subscription_request, audience_membership_change_request
    dsr.py         dsr_processing_request (erasure)
    fields.py      reading fields with their path, for errors like
                   `user_profiles[3].audiences[0].audience_id: must be a positive integer`

This module ties them together (`parse_message`) and is what the rest of the product imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connections.firehose.audiences import (
    ATTRIBUTE_ACTIONS,
    FIRST_NAME_ATTRIBUTE,
    LAST_NAME_ATTRIBUTE,
    MEMBERSHIP_ACTIONS,
    SEGMENT_ID_SETTING,
    SUBSCRIPTION_ACTIONS,
    AudienceChange,
    AudienceMembershipChangeRequest,
    AudienceSubscriptionRequest,
    SegmentSetting,
    UserAttribute,
    UserIdentity,
    UserProfile,
    parse_membership_change,
    parse_subscription,
)
from connections.firehose.decoding import MAX_DEPTH, decode_body, nesting_problem
from connections.firehose.dsr import DsrProcessingRequest, parse_dsr
from connections.firehose.envelope import (
    AUDIENCE_MEMBERSHIP_CHANGE,
    AUDIENCE_SUBSCRIPTION,
    CONNECTION_KEY_SETTING,
    DSR_PROCESSING,
    MODULE_REGISTRATION,
    REQUEST_TYPES,
    Account,
    Envelope,
    message_type,
    parse_envelope,
)
from connections.firehose.fields import (
    AUDIENCE_ID_MAX,
    AUDIENCE_NAME_MAX,
    CUSTOMER_ID_MAX,
    EMAIL_MAX,
    MESSAGE_ID_MAX,
    MPID_MAX,
    NAME_MAX,
    Fields,
    MessageError,
)

__all__ = [
    "ATTRIBUTE_ACTIONS",
    "AUDIENCE_ID_MAX",
    "AUDIENCE_MEMBERSHIP_CHANGE",
    "AUDIENCE_NAME_MAX",
    "AUDIENCE_SUBSCRIPTION",
    "CONNECTION_KEY_SETTING",
    "CUSTOMER_ID_MAX",
    "DSR_PROCESSING",
    "EMAIL_MAX",
    "FIRST_NAME_ATTRIBUTE",
    "LAST_NAME_ATTRIBUTE",
    "MAX_DEPTH",
    "MEMBERSHIP_ACTIONS",
    "MESSAGE_ID_MAX",
    "MODULE_REGISTRATION",
    "MPID_MAX",
    "NAME_MAX",
    "REQUEST_TYPES",
    "SEGMENT_ID_SETTING",
    "SUBSCRIPTION_ACTIONS",
    "Account",
    "AudienceChange",
    "AudienceMembershipChangeRequest",
    "AudienceSubscriptionRequest",
    "DsrProcessingRequest",
    "Envelope",
    "Message",
    "MessageError",
    "ModuleRegistrationRequest",
    "SegmentSetting",
    "UserAttribute",
    "UserIdentity",
    "UserProfile",
    "decode_body",
    "message_type",
    "nesting_problem",
    "parse_message",
]


@dataclass(frozen=True)
class ModuleRegistrationRequest:
    envelope: Envelope


Message = (
    ModuleRegistrationRequest | AudienceSubscriptionRequest | AudienceMembershipChangeRequest | DsrProcessingRequest
)


def parse_message(data: Mapping[str, Any]) -> Message:
    """A decoded body as a typed message, every field the product uses checked."""
    fields = Fields(data, "")
    envelope = parse_envelope(fields)
    if envelope.type == MODULE_REGISTRATION:
        return ModuleRegistrationRequest(envelope)
    if envelope.type == AUDIENCE_SUBSCRIPTION:
        return parse_subscription(fields, envelope)
    if envelope.type == DSR_PROCESSING:
        return parse_dsr(fields, envelope)
    return parse_membership_change(fields, envelope)
