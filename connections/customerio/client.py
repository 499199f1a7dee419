"""The only code that talks to Customer.io's Track API.

Every call returns a result whose `outcome` says what the caller should do next
(record success, retry later, fail for good, or fault the connection); no exception from
the HTTP stack escapes. Retrying is the caller's job: this module makes exactly one
attempt, so backoff, `Retry-After` and attempt counting live in one place. The HTTP
plumbing (sessions, classification, scrubbing credentials) is in `http.py`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import requests
from django.conf import settings

from connections.customerio.http import (
    USER_AGENT,
    CredentialCheck,
    HTTPClient,
    Outcome,
    SendResult,
    describe_error,
    json_or_none,
    parse_retry_after,
    str_or_none,
)
from connections.customerio.identifiers import Identifier
from connections.customerio.limits import AttributeValue, as_identifier, encode_json, v2_action

__all__ = [
    "REGION_HOSTS",
    "SEGMENT_ID_TYPES",
    "SEGMENT_MAX_IDS",
    "USER_AGENT",
    "BatchResult",
    "CustomerIOClient",
    "ItemResult",
    "Outcome",
    "PreparedBatch",
    "RegionResult",
    "SendResult",
    "parse_retry_after",
    "prepare_batch",
    "track_host",
]

REGION_HOSTS: dict[str, tuple[str, str]] = {
    # region: (Django setting, Customer.io's own host)
    "us": ("CUSTOMERIO_US_URL", "https://track.customer.io"),
    "eu": ("CUSTOMERIO_EU_URL", "https://track-eu.customer.io"),
}

# POST /api/v1/segments/{id}/add_customers and remove_customers: at most 1,000 ids a request,
# all of the kind `id_type` names (Customer.io ignores ids of another kind).
SEGMENT_MAX_IDS = 1000
SEGMENT_ID_TYPES = ("id", "email", "cio_id")


@dataclass(frozen=True)
class ItemResult:
    index: int
    customer_id: str  # the identifier's value (a customer ID, or an email)
    outcome: Outcome
    error: str


@dataclass(frozen=True)
class BatchResult:
    overall: SendResult  # SUCCEEDED for a 207: look at the items
    items: list[ItemResult] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedBatch:
    """A v2 batch ready to send: the exact body bytes, and who is in it, in order."""

    body: bytes
    values: list[str]  # each action's identifier value
    personal: list[str]  # identifiers and emails: kept out of every error text


def prepare_batch(items: Sequence[tuple[Identifier | str, Mapping[str, AttributeValue]]]) -> PreparedBatch:
    if not items:
        raise ValueError("batch_identify needs at least one item")
    body = encode_json({"batch": [v2_action(identifier, attributes) for identifier, attributes in items]})
    values = [as_identifier(identifier).value for identifier, _ in items]
    emails = [email for _, attributes in items if isinstance(email := attributes.get("email"), str)]
    return PreparedBatch(body, values, [*values, *emails])


@dataclass(frozen=True)
class RegionResult(CredentialCheck):
    result: SendResult
    region: str | None = None
    url: str | None = None
    environment_id: int | None = None


class CustomerIOClient(HTTPClient):
    credentials = "the Site ID / API key"

    def __init__(
        self,
        site_id: str,
        api_key: str,
        region: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if region not in REGION_HOSTS:
            raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGION_HOSTS)}")
        self.site_id = site_id
        self.region = region
        credentials = base64.b64encode(f"{site_id}:{api_key}".encode()).decode("ascii")
        authorization = f"Basic {credentials}"
        super().__init__(base_url or track_host(region), authorization, [authorization, credentials, api_key], timeout)

    def __repr__(self) -> str:
        # Never the key: this object ends up in tracebacks and debugger output.
        return f"CustomerIOClient(site_id={self.site_id!r}, region={self.region!r}, base_url={self.base_url!r})"

    def identify(self, identifier: Identifier | str, attributes: Mapping[str, AttributeValue]) -> SendResult:
        """v1: PUT /api/v1/customers/{id or email} with the attributes as the body.

        The path holds the customer ID or the email, percent-encoded as one segment;
        Customer.io tells them apart by their shape. A plain string is a customer ID.
        """
        chosen = as_identifier(identifier)
        email = attributes.get("email")
        return self._send(
            "PUT",
            "/api/v1/customers/{identifier}",
            dict(attributes),
            segments={"identifier": chosen.value},
            personal=[email] if isinstance(email, str) else [],
        )[0]

    def delete_person(self, identifier: str) -> SendResult:
        """DELETE /api/v1/customers/{identifier}: remove the person (an id, or an email in workspaces that allow it)."""
        return self._person_call("DELETE", identifier, "")

    def suppress_person(self, identifier: str) -> SendResult:
        """POST /api/v1/customers/{identifier}/suppress: delete the person and refuse the identifier from now on."""
        return self._person_call("POST", identifier, "/suppress")

    def _person_call(self, method: str, identifier: str, suffix: str) -> SendResult:
        # The OpenAPI document defines no request body for either call: none is sent.
        route = "/api/v1/customers/{identifier}" + suffix
        return self._send(method, route, None, segments={"identifier": identifier})[0]

    def batch_identify(
        self, items: Sequence[tuple[Identifier | str, Mapping[str, AttributeValue]]]
    ) -> BatchResult:
        """v2: one POST /api/v2/batch; a 207 is mapped back to the items it names."""
        return self.send_batch(prepare_batch(items))

    def send_batch(self, batch: PreparedBatch) -> BatchResult:
        """POST a prepared v2 batch (its body as logged: `prepare_batch`)."""
        overall, response = self._send("POST", "/api/v2/batch", batch.body, personal=batch.personal)
        if overall.http_status == 207 and response is not None:
            return self._partial_batch_result(overall, batch.values, response, batch.personal)
        return BatchResult(
            overall=overall,
            items=[ItemResult(i, value, overall.outcome, overall.error) for i, value in enumerate(batch.values)],
        )

    def add_to_segment(self, segment_id: int, ids: Sequence[str], id_type: str = "id") -> SendResult:
        """POST /api/v1/segments/{segment_id}/add_customers: put people in a manual segment."""
        return self._segment_request("add_customers", segment_id, ids, id_type)

    def remove_from_segment(self, segment_id: int, ids: Sequence[str], id_type: str = "id") -> SendResult:
        """POST /api/v1/segments/{segment_id}/remove_customers: take people out of a manual segment."""
        return self._segment_request("remove_customers", segment_id, ids, id_type)

    def account_region(self) -> RegionResult:
        """GET /api/v1/accounts/region: are the credentials valid, and for which region?"""
        result, response = self._send("GET", "/api/v1/accounts/region", None)
        if result.outcome is not Outcome.SUCCEEDED or response is None:
            return RegionResult(result)
        data = json_or_none(response.content)
        if not isinstance(data, dict):
            return RegionResult(result)
        environment_id = data.get("environment_id")
        return RegionResult(
            result,
            region=str_or_none(data.get("region")),
            url=str_or_none(data.get("url")),
            environment_id=environment_id if isinstance(environment_id, int) else None,
        )

    def _segment_request(self, operation: str, segment_id: int, ids: Sequence[str], id_type: str) -> SendResult:
        # Wrong arguments are the caller's bug, not something to log as a failed delivery:
        # splitting into requests of at most SEGMENT_MAX_IDS is the caller's job.
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id < 1:
            raise ValueError(f"segment_id must be a positive integer, not {segment_id!r}")
        if id_type not in SEGMENT_ID_TYPES:
            raise ValueError(f"unknown id_type {id_type!r}; expected one of {SEGMENT_ID_TYPES}")
        if isinstance(ids, str):
            raise ValueError("ids must be a sequence of identifiers, not one string")
        if not ids:
            raise ValueError("a segment request needs at least one id")
        if len(ids) > SEGMENT_MAX_IDS:
            raise ValueError(f"{len(ids):,} ids; Customer.io allows at most {SEGMENT_MAX_IDS:,} per segment request")
        path = f"/api/v1/segments/{segment_id}/{operation}"
        return self._send("POST", path, {"ids": list(ids)}, params={"id_type": id_type}, personal=list(ids))[0]

    def _partial_batch_result(
        self, overall: SendResult, values: list[str], response: requests.Response, personal: list[str]
    ) -> BatchResult:
        data = json_or_none(response.content)
        errors = data.get("errors") if isinstance(data, dict) else None
        if not isinstance(errors, list):
            # We know something failed but not what. Identify is idempotent, so sending
            # the whole batch again is safe, unlike guessing that it all went through.
            error = "Customer.io answered 207 without a readable error list"
            return BatchResult(
                overall=replace(overall, outcome=Outcome.RETRY, error=error),
                items=[ItemResult(index, value, Outcome.RETRY, error) for index, value in enumerate(values)],
            )
        item_errors: dict[int, list[str]] = {}
        unattributed: list[str] = []
        for entry in errors:
            index = entry.get("batch_index") if isinstance(entry, dict) else None
            if isinstance(index, int) and 0 <= index < len(values):
                item_errors.setdefault(index, []).append(self._scrub(describe_error(entry), personal))
            else:
                text = describe_error(entry) if isinstance(entry, dict) else str(entry)
                unattributed.append(self._scrub(text, personal))
        items = [
            ItemResult(index, value, Outcome.FAILED, "; ".join(item_errors[index]))
            if index in item_errors
            else ItemResult(index, value, Outcome.SUCCEEDED, "")
            for index, value in enumerate(values)
        ]
        summary = f"Customer.io rejected {len(item_errors)} of {len(values)} batch actions (HTTP 207)"
        if unattributed:
            # Customer.io says every action it does not name was accepted; keep the
            # errors we cannot place where an operator will see them.
            summary += f"; errors without a valid batch_index: {'; '.join(unattributed)}"
        return BatchResult(overall=replace(overall, error=summary), items=items)


def track_host(region: str) -> str:
    """Customer.io's Track host for a region, overridable in settings (tests, the demo)."""
    setting_name, default = REGION_HOSTS[region]
    # Read at call time, not import time, so that override_settings and a late
    # configure() are honoured; without Django configured, use Customer.io's hosts.
    if not settings.configured:
        return default
    return str(getattr(settings, setting_name, default) or default)
