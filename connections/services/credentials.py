"""Checking a connection's credentials with Customer.io (the admin's "Test credentials", `verify_credentials`).

`GET /api/v1/accounts/region` answers 200 with the workspace's region for a valid Site ID /
API key pair and 401 otherwise; it changes nothing in Customer.io.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from connections.crypto import EncryptionError
from connections.customerio.client import CustomerIOClient
from connections.models import Connection


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
    client = CustomerIOClient(connection.site_id, api_key, configured, timeout=settings.CUSTOMERIO_TIMEOUT)
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
