"""The only code that talks to Customer.io's App API (Bearer auth with an App API key).

Used from the admin, not the worker path: creating a manual segment for an audience
(`POST /v1/segments`) and checking that the key works (`GET /v1/segments`, which changes
nothing). Hosts: `CUSTOMERIO_APP_US_URL` / `CUSTOMERIO_APP_EU_URL`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from connections.customerio.http import CredentialCheck, HTTPClient, Outcome, SendResult, json_or_none

APP_REGION_HOSTS: dict[str, tuple[str, str]] = {
    # region: (Django setting, Customer.io's own App API host)
    "us": ("CUSTOMERIO_APP_US_URL", "https://api.customer.io"),
    "eu": ("CUSTOMERIO_APP_EU_URL", "https://api-eu.customer.io"),
}


class AppAPIError(Exception):
    """Customer.io did not do what was asked; the message is for a person and holds no key."""

    def __init__(self, message: str, result: SendResult) -> None:
        super().__init__(message)
        self.result = result

    @property
    def rejected(self) -> bool:
        """Customer.io refused the App API key (401/403)."""
        return self.result.outcome is Outcome.CREDENTIALS_REJECTED


@dataclass(frozen=True)
class AppCheck(CredentialCheck):
    result: SendResult
    segment_count: int | None = None  # segments the key can see, when it is valid


class CustomerIOAppClient(HTTPClient):
    credentials = "the App API key"

    def __init__(self, app_api_key: str, region: str, *, base_url: str | None = None, timeout: float = 10.0) -> None:
        if region not in APP_REGION_HOSTS:
            raise ValueError(f"unknown region {region!r}; expected one of {sorted(APP_REGION_HOSTS)}")
        if not app_api_key:
            raise ValueError("an App API key is needed")
        self.region = region
        authorization = f"Bearer {app_api_key}"
        super().__init__(base_url or app_host(region), authorization, [authorization, app_api_key], timeout)

    def __repr__(self) -> str:
        return f"CustomerIOAppClient(region={self.region!r}, base_url={self.base_url!r})"

    def create_segment(self, name: str, description: str = "") -> int:
        """POST /v1/segments: a new, empty manual segment; returns its id.

        Raises AppAPIError when Customer.io does not answer with a segment. Never retried
        here: creating is not idempotent, so a timeout may have created the segment.
        """
        if not name.strip():
            raise ValueError("a segment needs a name")
        body = {"segment": {"name": name, "description": description}}
        result, response = self._send("POST", "/v1/segments", body)
        if result.outcome is not Outcome.SUCCEEDED or response is None:
            message = f"Customer.io did not create the segment: {result.error}"
            if result.http_status is None and result.outcome is Outcome.RETRY:
                message += " It may have been created all the same: look for it in Customer.io before trying again."
            raise AppAPIError(message, result)
        data = json_or_none(response.content)
        segment = data.get("segment") if isinstance(data, dict) else None
        segment_id = segment.get("id") if isinstance(segment, dict) else None
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id < 1:
            raise AppAPIError(
                f"Customer.io answered HTTP {result.http_status} without a segment id: {result.response_text[:200]}",
                result,
            )
        return segment_id

    def check_credentials(self) -> AppCheck:
        """GET /v1/segments: does Customer.io accept the App API key? Changes nothing."""
        result, response = self._send("GET", "/v1/segments", None)
        if result.outcome is not Outcome.SUCCEEDED or response is None:
            return AppCheck(result)
        data = json_or_none(response.content)
        segments = data.get("segments") if isinstance(data, dict) else None
        return AppCheck(result, len(segments) if isinstance(segments, list) else None)


def app_host(region: str) -> str:
    """Customer.io's App API host for a region, overridable in settings (tests, the demo)."""
    setting_name, default = APP_REGION_HOSTS[region]
    if not settings.configured:
        return default
    return str(getattr(settings, setting_name, default) or default)
