"""Building Firehose messages for tests, from mParticle's official examples."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from django.apps import apps

from connections.models.observability import TELEMETRY_MODELS

URL = "/api/mparticle/firehose"
# The Connection Key of the `connection` fixture (tests/firehose/conftest.py): every message that
# names an account must name an existing connection (SPEC section 5).
TEST_CONNECTION_KEY = "test-connection-key"
# mParticle's official messages and schemas, vendored with their licence (tests/fixtures/README.md).
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "mparticle-firehose"


def official(name: str) -> dict[str, Any]:
    """One of mParticle's official example messages, e.g. official("AudienceSubscriptionRequest")."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


def assert_matches_schema(body: dict[str, Any], name: str) -> None:
    """The body validates against the official schema (draft 3: `required` sits on each property)."""
    schema = json.loads((REFERENCE / "schema" / f"{name}.json").read_text())
    jsonschema.Draft3Validator(schema).validate(body)


def row_counts() -> dict[str, int]:
    """Rows in every table the product owns (and users), to show that nothing changed."""
    models = [*apps.get_app_config("connections").get_models(), *apps.get_app_config("auth").get_models()]
    return {
        model._meta.label: model.objects.count() for model in models if model._meta.label_lower not in TELEMETRY_MODELS
    }


def with_connection_key(message: dict[str, Any], connection_key: str = TEST_CONNECTION_KEY) -> dict[str, Any]:
    """The message with its account's Connection Key set, as mParticle sends it once the output is set up."""
    message["account"]["account_settings"]["connectionKey"] = connection_key
    return message


def membership_request(
    *profiles: dict[str, Any], message_id: str | None = None, connection_key: str = TEST_CONNECTION_KEY
) -> dict[str, Any]:
    """An audience_membership_change_request carrying these user profiles, with a new id unless given."""
    message = with_connection_key(official("AudienceMembershipChangeRequest"), connection_key)
    message["id"] = message_id or str(uuid.uuid4())
    message["user_profiles"] = copy.deepcopy(list(profiles))
    return message


def user_profile(
    customer_id: str | None = None,
    email: str | None = None,
    mpid: str | None = None,
    audiences: list[dict[str, Any]] | None = None,
    encoding: str = "raw",
) -> dict[str, Any]:
    identities = []
    if customer_id is not None:
        identities.append({"type": "customer", "encoding": encoding, "value": customer_id})
    if email is not None:
        identities.append({"type": "email", "encoding": encoding, "value": email})
    profile: dict[str, Any] = {"user_identities": identities, "audiences": audiences or []}
    if mpid is not None:
        profile["mpid"] = mpid
    return profile


def audience(audience_id: int, action: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"audience_id": audience_id, "audience_name": name or f"Audience {audience_id}", "action": action, **fields}
