"""One HTTP request to Customer.io, classified: the plumbing shared by the Track client
(`client.py`) and the App API client (`app_client.py`).

Every call returns a `SendResult` whose `outcome` says what the caller should do next
(record success, retry later, fail for good, or fault the connection); no exception from
the HTTP stack escapes, and every text in a result is scrubbed of the credentials; error texts
name a request by its route template, never its URL, and hold no identifier of a person.
"""

from __future__ import annotations

import email.utils
import http.client
import http.cookiejar
import json
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from billiard.exceptions import SoftTimeLimitExceeded
from requests.adapters import HTTPAdapter

import connections
from connections.customerio.limits import encode_json
from connections.scrubbing import scrub_text

DEFAULT_VERSION = "0.1.0"
USER_AGENT = f"cioaudience/{getattr(connections, '__version__', DEFAULT_VERSION)}"

MAX_RESPONSE_TEXT_CHARS = 2000
MAX_CONNECT_TIMEOUT_SECONDS = 5.0
REDACTED = "[redacted]"
PERSONAL_VALUE = "[identifier]"  # in place of a person's identifier in an error text

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


class CredentialCheck:
    """What a credentials check says (mixed into the result dataclasses that carry `result`)."""

    result: SendResult

    @property
    def valid(self) -> bool:
        """Customer.io accepted the credentials."""
        return self.result.outcome is Outcome.SUCCEEDED

    @property
    def rejected(self) -> bool:
        return self.result.outcome is Outcome.CREDENTIALS_REJECTED


class HTTPClient:
    """Sends one request with a fixed Authorization header and classifies the answer.

    `credentials` names what a 401/403 rejected, for the error message ("the Site ID /
    API key"); `secrets` are scrubbed from every text a result carries.
    """

    credentials = "the credentials"

    def __init__(self, base_url: str, authorization: str, secrets: list[str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._authorization = authorization
        self._secrets = [secret for secret in secrets if secret]

    def _send(
        self,
        method: str,
        route: str,
        body: Any,
        params: Mapping[str, str] | None = None,
        *,
        segments: Mapping[str, str] | None = None,
        personal: Sequence[str] = (),
    ) -> tuple[SendResult, requests.Response | None]:
        """One request to `route`, a path template whose `{name}` parts are filled from `segments`
        (each percent-encoded as one path segment).

        The values in `segments` and `personal` (identifiers the body carries) are personal: no error
        text holds them in any encoding. Errors name the request by its method and template
        ("PUT /api/v1/customers/{identifier}"), never by its URL.
        """
        started = time.monotonic()
        request = f"{method} {route}"
        personal = [*(segments or {}).values(), *personal]
        try:
            path = _fill(route, segments or {})
        except UnicodeEncodeError as exc:
            error = f"{request}: the identifier cannot be encoded as UTF-8: {exc.reason}"
            return self._failed_before_sending(Outcome.FAILED, error, started, 0, personal), None
        try:
            data = body if isinstance(body, bytes) or body is None else encode_json(body)
        except UnicodeEncodeError as exc:
            # Lone surrogates from JSON input have no UTF-8 form; no request can carry them.
            error = f"{request}: the request body cannot be encoded as UTF-8: {exc.reason}"
            return self._failed_before_sending(Outcome.FAILED, error, started, 0, personal), None
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
                params=params,
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
            return self._failed_before_sending(outcome, f"{request}: {error}", started, bytes_sent, personal), None
        outcome, error = _classify_response(response, self.credentials)
        retry_after = response.headers.get("Retry-After") if outcome is Outcome.RETRY else None
        result = SendResult(
            outcome=outcome,
            http_status=response.status_code,
            # Customer.io may echo the person here too: kept for the log, whose row may be completed
            # after an erasure scrubbed it (a request in flight), so it never holds them.
            response_text=self._scrub(_decode(response.content), personal)[:MAX_RESPONSE_TEXT_CHARS],
            retry_after=parse_retry_after(retry_after),
            duration_ms=_elapsed_ms(started),
            error=self._scrub(error, personal),  # Customer.io's message may echo the person
            bytes_sent=bytes_sent,
        )
        return result, response

    def _failed_before_sending(
        self, outcome: Outcome, error: str, started: float, bytes_sent: int, personal: Sequence[str] = ()
    ) -> SendResult:
        """A result for a request that got no HTTP response at all."""
        return SendResult(
            outcome=outcome,
            http_status=None,
            response_text="",
            retry_after=None,
            duration_ms=_elapsed_ms(started),
            error=self._scrub(error, personal),
            bytes_sent=bytes_sent,
        )

    def _scrub(self, text: str, personal: Sequence[str] = ()) -> str:
        """The text without the credentials, nor the personal values in any encoding."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return scrub_text(text, list(personal), PERSONAL_VALUE) if text and personal else text


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


def _classify_response(response: requests.Response, credentials: str) -> tuple[Outcome, str]:
    status = response.status_code
    message = _customerio_message(_decode(response.content)) or response.reason or ""
    suffix = f": {message}" if message else ""
    if 200 <= status < 300:
        return Outcome.SUCCEEDED, ""
    if status in (401, 403):
        return Outcome.CREDENTIALS_REJECTED, f"Customer.io rejected {credentials} (HTTP {status}){suffix}"
    if status == 429:
        return Outcome.RETRY, f"Customer.io rate limit reached (HTTP 429){suffix}"
    if status >= 500:
        return Outcome.RETRY, f"Customer.io server error (HTTP {status}){suffix}"
    if status == 408:
        # Request Timeout: the server gave up waiting for us; transient like our own timeouts.
        return Outcome.RETRY, f"Customer.io timed out reading the request (HTTP 408){suffix}"
    return Outcome.FAILED, f"Customer.io rejected the request (HTTP {status}){suffix}"


def _classify_exception(exc: Exception, timeout: float) -> tuple[Outcome, str]:
    """What to do, and what happened in words of our own: an exception's text names the URL
    (and so the person in it), so it is never quoted; its kind and its root OS error are."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Outcome.RETRY, "timed out connecting to Customer.io"
    if isinstance(exc, requests.exceptions.Timeout):
        return Outcome.RETRY, f"Customer.io did not answer within {timeout:g}s"
    if isinstance(exc, ValueError):
        # Invalid URL, header or body encoding: our configuration, not a network blip.
        return Outcome.FAILED, f"the request to Customer.io could not be built ({type(exc).__name__})"
    if isinstance(
        exc,
        requests.exceptions.RequestException | urllib3.exceptions.HTTPError | http.client.HTTPException | OSError,
    ):
        return Outcome.RETRY, f"connection to Customer.io failed ({_network_cause(exc)})"
    # Anything else is a bug in the HTTP stack or here; retrying keeps the data.
    return Outcome.RETRY, f"unexpected error talking to Customer.io ({type(exc).__name__})"


def _network_cause(exc: BaseException) -> str:
    """The innermost cause, as the operating system words it ("connection refused", "name or
    service not known") or by its kind; never an exception's text, which names the URL."""
    innermost = exc
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or type(cause).__name__}"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the connection was closed without an answer"
        if isinstance(cause, OSError) and isinstance(cause.strerror, str) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        innermost = cause
    return type(innermost).__name__


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests and urllib3 keep the cause in args and `reason`),
    the innermost first."""
    chain: list[BaseException] = []
    pending = [exc]
    while pending:
        cause = pending.pop()
        if any(cause is seen for seen in chain) or len(chain) > 20:
            continue
        chain.append(cause)
        wrapped = [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *cause.args]
        pending.extend(inner for inner in wrapped if isinstance(inner, BaseException))
    return chain[::-1]


def _fill(route: str, segments: Mapping[str, str]) -> str:
    """The route with each `{name}` replaced by its value, percent-encoded as one path segment."""
    path = route
    for name, value in segments.items():
        path = path.replace(f"{{{name}}}", quote(value, safe=""))
    return path


def _customerio_message(text: str) -> str:
    """Customer.io's own words from an error body: meta.error, errors[].message, or the text."""
    data = json_or_none(text.encode())
    if isinstance(data, dict):
        meta = data.get("meta")
        if isinstance(meta, dict):
            if isinstance(meta.get("error"), str):
                return meta["error"]
            if isinstance(meta.get("errors"), list):
                return "; ".join(str(error) for error in meta["errors"])
        if isinstance(data.get("errors"), list):
            return "; ".join(
                describe_error(error) if isinstance(error, dict) else str(error) for error in data["errors"]
            )
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return data[key]
    return " ".join(text.split())[:500]


def describe_error(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "")
    details = ", ".join(f"{key}: {error[key]}" for key in ("reason", "field") if error.get(key) not in (None, ""))
    if message and details:
        return f"{message} ({details})"
    return message or details or json.dumps(dict(error), ensure_ascii=False)


def json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _decode(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
