"""Fixtures for the Firehose endpoint's tests: a token, a connection, a poster."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from connections.firehose import inbox
from connections.services.ingest import tokens
from tests.support.factories import ConnectionFactory
from tests.support.firehose import TEST_CONNECTION_KEY, URL, official


@pytest.fixture
def token(db) -> str:
    _, secret = tokens.create_token("mParticle")
    return secret


@pytest.fixture
def connection(db):
    """The connection the test messages name (their Connection Key is TEST_CONNECTION_KEY)."""
    return ConnectionFactory(connection_key=TEST_CONNECTION_KEY)


@pytest.fixture(params=["request", "worker"], autouse=True)
def firehose_apply(request, settings) -> str:
    """Every test here runs with both FIREHOSE_APPLY modes: the same answers, the same changes.

    With "worker", `post` then applies what the request stored, as a worker would.
    """
    settings.FIREHOSE_APPLY = request.param
    return request.param


@pytest.fixture
def apply_stored(firehose_apply):
    """Apply what requests stored, as a worker would (nothing to do when requests apply their messages)."""

    def apply() -> None:
        if firehose_apply == "worker":
            inbox.apply_pending()

    return apply


@pytest.fixture
def post(client, token, connection, apply_stored):
    """POST a message (a dict, or raw bytes) with the token; returns the response (the message applied)."""

    def send(message: dict[str, Any] | bytes | str, auth: str | None = "default", **extra: Any):
        body = message if isinstance(message, bytes | str) else json.dumps(message)
        headers = {}
        if auth == "default":
            headers["HTTP_AUTHORIZATION"] = f"Token {token}"
        elif auth is not None:
            headers["HTTP_AUTHORIZATION"] = auth
        content_type = extra.pop("content_type", "application/json")
        response = client.post(URL, data=body, content_type=content_type, **headers, **extra)
        apply_stored()
        return response

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
