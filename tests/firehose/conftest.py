"""Fixtures for the Firehose endpoint's tests: a token, a connection, a poster."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from connections.services import tokens
from tests.factories import ConnectionFactory
from tests.firehose.builders import TEST_CONNECTION_KEY, URL, official


@pytest.fixture
def token(db) -> str:
    _, secret = tokens.create_token("mParticle")
    return secret


@pytest.fixture
def connection(db):
    """The connection the test messages name (their Connection Key is TEST_CONNECTION_KEY)."""
    return ConnectionFactory(connection_key=TEST_CONNECTION_KEY)


@pytest.fixture
def post(client, token, connection):
    """POST a message (a dict, or raw bytes) with the token; returns the response."""

    def send(message: dict[str, Any] | bytes | str, auth: str | None = "default", **extra: Any):
        body = message if isinstance(message, bytes | str) else json.dumps(message)
        headers = {}
        if auth == "default":
            headers["HTTP_AUTHORIZATION"] = f"Token {token}"
        elif auth is not None:
            headers["HTTP_AUTHORIZATION"] = auth
        content_type = extra.pop("content_type", "application/json")
        return client.post(URL, data=body, content_type=content_type, **headers, **extra)

    return send


@pytest.fixture
def subscription_request(connection):
    """The official subscription request, with a new id and this connection's key as its Connection Key."""

    def make(**fields: Any) -> dict[str, Any]:
        message = official("AudienceSubscriptionRequest")
        message["id"] = str(uuid.uuid4())
        message["account"]["account_settings"]["connectionKey"] = connection.connection_key
        message.update(fields)
        return message

    return make
