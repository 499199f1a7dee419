"""The answers to Firehose messages, in the protocol's format (reference/mparticle-firehose)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import connections
from connections.firehose.messages import (
    CONNECTION_KEY_SETTING,
    SEGMENT_ID_SETTING,
    AudienceMembershipChangeRequest,
    AudienceSubscriptionRequest,
    DsrProcessingRequest,
    Envelope,
    ModuleRegistrationRequest,
)

MODULE_NAME = "cioaudience"
# The Firehose SDK release whose protocol this module speaks (the reference messages' version).
SDK_VERSION = "3.2.0"
MODULE_DESCRIPTION = (
    "Forwards audience membership to Customer.io as person attributes: either one attribute "
    'per audience ("In &lt;audience name&gt;") or a single <code>SegmentMembership</code> attribute '
    "listing audience ids, and optionally into a Customer.io manual segment. Profiles are identified by "
    "their raw Customer ID (or email). Erasure requests delete the person here and suppress or delete "
    "them in Customer.io."
)


def connection_key_setting() -> dict[str, Any]:
    return {
        "type": "text",
        "id": CONNECTION_KEY_SETTING,
        "name": "Connection Key",
        "description": (
            "Paste the connection key shown on the connection's page in cioaudience "
            "(Connections, then the Customer.io workspace to forward to)."
        ),
        "visible": True,
        "required": True,
        "confidential": False,
    }


def segment_id_setting() -> dict[str, Any]:
    return {
        "type": "integer",
        "id": SEGMENT_ID_SETTING,
        "name": "Customer.io manual segment ID",
        "description": (
            "Optional. The id of a manual segment in Customer.io (Segments, then the segment's page) "
            "that this audience's members are added to and removed from."
        ),
        "visible": True,
        "required": False,
    }


def envelope_for(request: Envelope) -> dict[str, Any]:
    """type (`..._request` -> `..._response`), a new id, the time now, the request's firehose_version."""
    return {
        "type": request.type.removesuffix("_request") + "_response",
        "id": str(uuid.uuid4()),
        "timestamp_ms": int(time.time() * 1000),
        "firehose_version": request.firehose_version,
    }


def module_registration_response(request: ModuleRegistrationRequest) -> dict[str, Any]:
    return {
        **envelope_for(request.envelope),
        "sdk_version": SDK_VERSION,
        "name": MODULE_NAME,
        "description": MODULE_DESCRIPTION,
        "version": connections.__version__,
        "permissions": {
            "user_identities": [
                {"type": "customer", "encoding": "raw", "required": False},
                {"type": "email", "encoding": "raw", "required": False},
            ],
            "allow_access_mpid": True,
        },
        "audience_processing_registration": {
            "account_settings": [connection_key_setting()],
            "audience_subscription_settings": [segment_id_setting()],
        },
        # mParticle forwards erasure requests to outputs that declare this (Firehose SDK 2.9.0).
        "dsr_processing_registration": {
            "account_settings": [connection_key_setting()],
            "supported_dsr_types": ["erasure"],
        },
    }


def audience_subscription_response(request: AudienceSubscriptionRequest) -> dict[str, Any]:
    response = envelope_for(request.envelope)
    if request.audience_subscription_settings is not None:
        response["audience_subscription_settings"] = request.audience_subscription_settings
    return response


def audience_membership_change_response(request: AudienceMembershipChangeRequest) -> dict[str, Any]:
    return {**envelope_for(request.envelope), "suspend_subscription": False}


def dsr_processing_response(request: DsrProcessingRequest) -> dict[str, Any]:
    """The envelope alone, as the SDK's DsrProcessingResponse and the official sample have it."""
    return envelope_for(request.envelope)
