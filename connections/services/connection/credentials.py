"""Checking a connection's credentials with Customer.io (at save, the admin's "Test credentials", `verify_credentials`).

`GET /api/v1/accounts/region` answers 200 with the workspace's region for a valid Site ID /
API key pair and 401 otherwise; it changes nothing in Customer.io. The optional App API key
is checked with the App API's `GET /v1/segments`, which changes nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from connections.crypto import EncryptionError
from connections.models import Connection
from connections.services.connection import clients, transitions


@dataclass(frozen=True)
class CredentialCheck:
    valid: bool  # Customer.io accepted the credentials
    rejected: bool  # Customer.io refused them (401/403); False when it could not be asked
    region: str | None  # the workspace's region, as Customer.io reports it
    configured_region: str
    region_mismatch: bool  # valid, but the connection is set to the other region
    message: str  # for a person; never holds the API key


def verify_credentials(connection: Connection) -> CredentialCheck:
    configured = connection.region
    try:
        api_key = connection.api_key
    except EncryptionError as error:
        return CredentialCheck(False, False, None, configured, False, f"The stored API key cannot be used: {error}")
    client = clients.track_client(connection, api_key)
    answer = client.account_region()
    if answer.rejected:
        return CredentialCheck(False, True, None, configured, False, answer.result.error)
    if not answer.valid:
        return CredentialCheck(
            False, False, None, configured, False, f"Could not check the credentials: {answer.result.error}"
        )
    region = answer.region.lower() if answer.region else None
    mismatch = region is not None and region != configured
    message = "Customer.io accepted the credentials"
    message += f"; the workspace is in the {region.upper()} region." if region else "."
    if region and mismatch:
        message += (
            f" The connection is set to {configured.upper()}: change its region to {region.upper()}"
            " so that data goes to the workspace's own data center."
        )
    return CredentialCheck(True, False, region, configured, mismatch, message)


@dataclass(frozen=True)
class RecordedCheck:
    check: CredentialCheck
    resumed: bool  # the connection was faulted and Customer.io now accepts its credentials


def check_and_record(connection: Connection, *, credentials_changed: bool = False) -> RecordedCheck:
    """Check the credentials and keep what Customer.io said, in the one place a connection's credentials live.

    Rejected (401/403): the connection is faulted, as a rejected delivery would fault it, so it is
    never shown as active with a key Customer.io refuses. Accepted: it is verified (`credential_status`),
    and a faulted connection resumes, so fixing a key takes one save. Not asked (timeout, network,
    5xx): nothing is known; credentials that just changed are "not verified" until Customer.io
    accepts them (a later check, or a delivery it takes).
    """
    check = verify_credentials(connection)
    connection.refresh_from_db(fields=["state"])  # a worker may have faulted it meanwhile
    resumed = False
    if check.valid:
        Connection.objects.filter(pk=connection.pk).update(credentials_verified_at=timezone.now())
        if connection.state == Connection.State.FAULTED:
            resumed = transitions.resume(connection, reason="Customer.io accepted the credentials")
    elif check.rejected:
        transitions.fault(connection, check.message)
    elif credentials_changed:
        Connection.objects.filter(pk=connection.pk).update(credentials_verified_at=None)
    connection.refresh_from_db(fields=["state", "credentials_verified_at", "last_error", "last_error_at"])
    return RecordedCheck(check, resumed)


@dataclass(frozen=True)
class AppKeyCheck:
    valid: bool
    rejected: bool  # Customer.io refused the key (401/403)
    message: str  # for a person; never holds the key


def verify_app_api_key(connection: Connection) -> AppKeyCheck | None:
    """Check the connection's App API key; None when it has none."""
    if not connection.app_api_key_last4:
        return None
    try:
        client = clients.app_client(connection)
    except clients.NoAppKey as error:
        return AppKeyCheck(False, False, str(error))
    check = client.check_credentials()
    if check.valid:
        return AppKeyCheck(True, False, "Customer.io accepted the App API key.")
    if check.rejected:
        return AppKeyCheck(False, True, f"{check.result.error}. Enter the App API key again and save.")
    return AppKeyCheck(False, False, f"Could not check the App API key: {check.result.error}")
