"""The one place a Customer.io client is built from a connection: its Site ID, key, region and timeout."""

from __future__ import annotations

from django.conf import settings

from connections.crypto import EncryptionError
from connections.customerio.app_client import CustomerIOAppClient
from connections.customerio.client import CustomerIOClient
from connections.models import Connection


class NoAppKey(Exception):
    """Why the connection's App API key cannot be used; the message is for a person and holds no key."""


def track_client(connection: Connection, api_key: str | None = None) -> CustomerIOClient:
    """A Track API client for the connection (with `api_key`: that key, already decrypted by the caller)."""
    key = connection.api_key if api_key is None else api_key
    return CustomerIOClient(connection.site_id, key, connection.region, timeout=settings.CUSTOMERIO_TIMEOUT)


def app_client(connection: Connection) -> CustomerIOAppClient:
    """An App API client for the connection; NoAppKey when it has no usable key."""
    if not connection.app_api_key_last4:
        raise NoAppKey(
            f"{connection.name} has no App API key: add one on the connection (Customer.io: Settings, "
            "API credentials, App API keys) to create segments from here, or create the manual segment in "
            "Customer.io and enter its ID on the subscription."
        )
    try:
        key = connection.app_api_key
    except EncryptionError as error:
        raise NoAppKey(f"The stored App API key of {connection.name} cannot be used: {error}") from None
    return CustomerIOAppClient(key, connection.region, timeout=settings.CUSTOMERIO_TIMEOUT)
