"""The only code that talks to Customer.io's Track API.

Every call returns a result whose `outcome` says what the caller should do next
(record success, retry later, fail for good, or fault the connection); no exception from
the HTTP stack escapes. Retrying is the caller's job: this module makes exactly one
attempt, so backoff, `Retry-After` and attempt counting live in one place.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import http.cookiejar
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from requests.adapters import HTTPAdapter

import connections
from connections.customerio.limits import encode_json, v2_action

DEFAULT_VERSION = "0.1.0"
USER_AGENT = f"cioaudience/{getattr(connections, '__version__', DEFAULT_VERSION)}"

REGION_HOSTS: dict[str, tuple[str, str]] = {
    # region: (Django setting, Customer.io's own host)
    "us": ("CUSTOMERIO_US_URL", "https://track.customer.io"),
    "eu": ("CUSTOMERIO_EU_URL", "https://track-eu.customer.io"),
}

MAX_RESPONSE_TEXT_CHARS = 2000
MAX_CONNECT_TIMEOUT_SECONDS = 5.0
REDACTED = "[redacted]"

# Each thread owns its session (requests.Session is not thread-safe), so a pool never
# serves more than one request at a time; what matters is keeping a warm connection
# to each host a worker talks to (US, EU, and a stand-in or two in tests).
POOL_HOSTS = 8
POOL_CONNECTIONS_PER_HOST = 4


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    CREDENTIALS_REJECTED = "credentials_rejected"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    http_status: int | None
    response_text: str  # scrubbed, at most MAX_RESPONSE_TEXT_CHARS
    retry_after: float | None  # seconds, from a Retry-After header
    duration_ms: int
    error: str  # human readable, "" on success; never holds credentials
    bytes_sent: int  # request body bytes, 0 when nothing could be built


@dataclass(frozen=True)
class ItemResult:
    index: int
    customer_id: str
    outcome: Outcome
    error: str


@dataclass(frozen=True)
class BatchResult:
    overall: SendResult  # SUCCEEDED for a 207: look at the items
    items: list[ItemResult] = field(default_factory=list)


@dataclass(frozen=True)
class RegionResult:
    result: SendResult
    region: str | None = None
    url: str | None = None
    environment_id: int | None = None

    @property
    def valid(self) -> bool:
        """Customer.io accepted the credentials."""
        return self.result.outcome is Outcome.SUCCEEDED

    @property
    def rejected(self) -> bool:
        return self.result.outcome is Outcome.CREDENTIALS_REJECTED


class CustomerIOClient:
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
        self.base_url = (base_url or track_host(region)).rstrip("/")
        self.timeout = timeout
        credentials = base64.b64encode(f"{site_id}:{api_key}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"
        self._secrets = [secret for secret in (self._authorization, credentials, api_key) if secret]

    def __repr__(self) -> str:
        # Never the key: this object ends up in tracebacks and debugger output.
        return f"CustomerIOClient(site_id={self.site_id!r}, region={self.region!r}, base_url={self.base_url!r})"

    def identify(self, customer_id: str, attributes: Mapping[str, str]) -> SendResult:
        """v1: PUT /api/v1/customers/{customer_id} with the attributes as the body."""
        try:
            path = f"/api/v1/customers/{quote(customer_id, safe='')}"
        except UnicodeEncodeError as exc:
            error = f"customer_id cannot be encoded as UTF-8: {exc.reason}"
            return self._failed_before_sending(Outcome.FAILED, error, time.monotonic(), 0)
        return self._send("PUT", path, dict(attributes))[0]

    def batch_identify(self, items: Sequence[tuple[str, Mapping[str, str]]]) -> BatchResult:
        """v2: one POST /api/v2/batch; a 207 is mapped back to the items it names."""
        if not items:
            raise ValueError("batch_identify needs at least one item")
        body = {"batch": [v2_action(customer_id, attributes) for customer_id, attributes in items]}
        overall, response = self._send("POST", "/api/v2/batch", body)
        customer_ids = [customer_id for customer_id, _ in items]
        if overall.http_status == 207 and response is not None:
            return self._partial_batch_result(overall, customer_ids, response)
        return BatchResult(
            overall=overall,
            items=[
                ItemResult(index, customer_id, overall.outcome, overall.error)
                for index, customer_id in enumerate(customer_ids)
            ],
        )

    def account_region(self) -> RegionResult:
        """GET /api/v1/accounts/region: are the credentials valid, and for which region?"""
        result, response = self._send("GET", "/api/v1/accounts/region", None)
        if result.outcome is not Outcome.SUCCEEDED or response is None:
            return RegionResult(result)
        data = _json_or_none(response.content)
        if not isinstance(data, dict):
            return RegionResult(result)
        environment_id = data.get("environment_id")
        return RegionResult(
            result,
            region=_str_or_none(data.get("region")),
            url=_str_or_none(data.get("url")),
            environment_id=environment_id if isinstance(environment_id, int) else None,
        )

    def _send(self, method: str, path: str, body: Any) -> tuple[SendResult, requests.Response | None]:
        started = time.monotonic()
        try:
            data = encode_json(body) if body is not None else None
        except UnicodeEncodeError as exc:
            # Lone surrogates from JSON input have no UTF-8 form; no request can carry them.
            error = f"request body cannot be encoded as UTF-8: {exc.reason}"
            return self._failed_before_sending(Outcome.FAILED, error, started, 0), None
        bytes_sent = len(data) if data is not None else 0
        headers = {
            "Authorization": self._authorization,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = _thread_session().request(
                method,
                f"{self.base_url}{path}",
                data=data,
                headers=headers,
                timeout=(min(self.timeout, MAX_CONNECT_TIMEOUT_SECONDS), self.timeout),
                # A redirect would replay the body somewhere else; Customer.io never sends one.
                allow_redirects=False,
            )
        except SoftTimeLimitExceeded:
            # The worker's task time limit, raised into whatever the task was doing: not a
            # Customer.io failure to retry later but the signal to stop now (the forwarding
            # path gives the claimed rows back, untouched).
            raise
        except Exception as exc:  # every failure is classified below, none swallowed
            outcome, error = _classify_exception(exc, self.timeout)
            return self._failed_before_sending(outcome, error, started, bytes_sent), None
        outcome, error = _classify_response(response)
        retry_after = response.headers.get("Retry-After") if outcome is Outcome.RETRY else None
        result = SendResult(
            outcome=outcome,
            http_status=response.status_code,
            response_text=self._scrub(_decode(response.content))[:MAX_RESPONSE_TEXT_CHARS],
            retry_after=parse_retry_after(retry_after),
            duration_ms=_elapsed_ms(started),
            error=self._scrub(error),
            bytes_sent=bytes_sent,
        )
        return result, response

    def _failed_before_sending(self, outcome: Outcome, error: str, started: float, bytes_sent: int) -> SendResult:
        """A result for a request that got no HTTP response at all."""
        return SendResult(
            outcome=outcome,
            http_status=None,
            response_text="",
            retry_after=None,
            duration_ms=_elapsed_ms(started),
            error=self._scrub(error),
            bytes_sent=bytes_sent,
        )

    def _partial_batch_result(
        self, overall: SendResult, customer_ids: list[str], response: requests.Response
    ) -> BatchResult:
        data = _json_or_none(response.content)
        errors = data.get("errors") if isinstance(data, dict) else None
        if not isinstance(errors, list):
            # We know something failed but not what. Identify is idempotent, so sending
            # the whole batch again is safe, unlike guessing that it all went through.
            error = "Customer.io answered 207 without a readable error list"
            return BatchResult(
                overall=replace(overall, outcome=Outcome.RETRY, error=error),
                items=[
                    ItemResult(index, customer_id, Outcome.RETRY, error)
                    for index, customer_id in enumerate(customer_ids)
                ],
            )
        item_errors: dict[int, list[str]] = {}
        unattributed: list[str] = []
        for entry in errors:
            index = entry.get("batch_index") if isinstance(entry, dict) else None
            if isinstance(index, int) and 0 <= index < len(customer_ids):
                item_errors.setdefault(index, []).append(self._scrub(_describe_error(entry)))
            else:
                unattributed.append(self._scrub(_describe_error(entry) if isinstance(entry, dict) else str(entry)))
        items = [
            ItemResult(index, customer_id, Outcome.FAILED, "; ".join(item_errors[index]))
            if index in item_errors
            else ItemResult(index, customer_id, Outcome.SUCCEEDED, "")
            for index, customer_id in enumerate(customer_ids)
        ]
        summary = f"Customer.io rejected {len(item_errors)} of {len(customer_ids)} batch actions (HTTP 207)"
        if unattributed:
            # Customer.io says every action it does not name was accepted; keep the
            # errors we cannot place where an operator will see them.
            summary += f"; errors without a valid batch_index: {'; '.join(unattributed)}"
        return BatchResult(overall=replace(overall, error=summary), items=items)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def track_host(region: str) -> str:
    """Customer.io's Track host for a region, overridable in settings (tests, the demo)."""
    setting_name, default = REGION_HOSTS[region]
    # Read at call time, not import time, so that override_settings and a late
    # configure() are honoured; without Django configured, use Customer.io's hosts.
    if not settings.configured:
        return default
    return str(getattr(settings, setting_name, default) or default)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT; be lenient about the zone
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / infinity
        return None
    return max(seconds, 0.0)


_thread_local = threading.local()


def _thread_session() -> requests.Session:
    session: requests.Session | None = getattr(_thread_local, "session", None)
    if session is None:
        session = requests.Session()
        # max_retries=0: the caller retries with backoff; urllib3 must not resend a PUT behind its back.
        adapter = HTTPAdapter(pool_connections=POOL_HOSTS, pool_maxsize=POOL_CONNECTIONS_PER_HOST, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The session is shared by every workspace this thread sends for; a cookie set
        # for one must not ride along with another's requests.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        _thread_local.session = session
    return session


def _classify_response(response: requests.Response) -> tuple[Outcome, str]:
    status = response.status_code
    message = _customerio_message(_decode(response.content)) or response.reason or ""
    suffix = f": {message}" if message else ""
    if 200 <= status < 300:
        return Outcome.SUCCEEDED, ""
    if status in (401, 403):
        return Outcome.CREDENTIALS_REJECTED, f"Customer.io rejected the Site ID / API key (HTTP {status}){suffix}"
    if status == 429:
        return Outcome.RETRY, f"Customer.io rate limit reached (HTTP 429){suffix}"
    if status >= 500:
        return Outcome.RETRY, f"Customer.io server error (HTTP {status}){suffix}"
    if status == 408:
        # Request Timeout: the server gave up waiting for us; transient like our own timeouts.
        return Outcome.RETRY, f"Customer.io timed out reading the request (HTTP 408){suffix}"
    return Outcome.FAILED, f"Customer.io rejected the request (HTTP {status}){suffix}"


def _classify_exception(exc: Exception, timeout: float) -> tuple[Outcome, str]:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Outcome.RETRY, f"timed out connecting to Customer.io: {exc}"
    if isinstance(exc, requests.exceptions.Timeout):
        return Outcome.RETRY, f"Customer.io did not answer within {timeout:g}s: {exc}"
    if isinstance(exc, ValueError):
        # Invalid URL, header or body encoding: our configuration, not a network blip.
        return Outcome.FAILED, f"request to Customer.io could not be built: {exc}"
    if isinstance(
        exc,
        requests.exceptions.RequestException | urllib3.exceptions.HTTPError | http.client.HTTPException | OSError,
    ):
        return Outcome.RETRY, f"connection to Customer.io failed: {exc}"
    # Anything else is a bug in the HTTP stack or here; retrying keeps the data.
    return Outcome.RETRY, f"unexpected error talking to Customer.io: {type(exc).__name__}: {exc}"


def _customerio_message(text: str) -> str:
    """Customer.io's own words from an error body: meta.error, errors[].message, or the text."""
    data = _json_or_none(text.encode())
    if isinstance(data, dict):
        meta = data.get("meta")
        if isinstance(meta, dict):
            if isinstance(meta.get("error"), str):
                return meta["error"]
            if isinstance(meta.get("errors"), list):
                return "; ".join(str(error) for error in meta["errors"])
        if isinstance(data.get("errors"), list):
            return "; ".join(
                _describe_error(error) if isinstance(error, dict) else str(error) for error in data["errors"]
            )
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return data[key]
    return " ".join(text.split())[:500]


def _describe_error(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "")
    details = ", ".join(f"{key}: {error[key]}" for key in ("reason", "field") if error.get(key) not in (None, ""))
    if message and details:
        return f"{message} ({details})"
    return message or details or json.dumps(dict(error), ensure_ascii=False)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _decode(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
