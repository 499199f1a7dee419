"""The stand-in's value types: workspaces, faults and recorded requests."""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

TRACK_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}


@dataclass(frozen=True)
class Workspace:
    """A Customer.io workspace the stand-in accepts credentials for.

    ``rate_limit`` is in requests per second (``None``: unlimited); every authenticated Track
    request of the workspace counts, reads included, as at Customer.io. ``environment_id`` is what
    ``GET /api/v1/accounts/region`` answers; by default a stable number derived from the site ID.
    ``app_api_key`` (optional) is the App API key accepted as ``Authorization: Bearer``.
    """

    site_id: str
    api_key: str = field(repr=False)  # never shown: reprs end up in logs and test output
    region: str = "us"
    rate_limit: int | None = None
    environment_id: int | None = None
    app_api_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.site_id or ":" in self.site_id:
            # HTTP Basic splits "user:password" at the first colon, so a site ID cannot hold one.
            raise ValueError("site_id must be non-empty and must not contain ':'")
        if not self.api_key:
            raise ValueError(f"workspace {self.site_id!r}: api_key must not be empty")
        if self.region not in TRACK_URLS:
            raise ValueError(f"workspace {self.site_id!r}: region must be 'us' or 'eu'")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int)
            or self.rate_limit < 1
        ):
            raise ValueError(f"workspace {self.site_id!r}: rate_limit must be a positive integer")
        if not isinstance(self.app_api_key, str) or any(c.isspace() for c in self.app_api_key):
            raise ValueError(f"workspace {self.site_id!r}: app_api_key must be a string without spaces")
        if self.environment_id is None:
            object.__setattr__(self, "environment_id", zlib.crc32(self.site_id.encode()) % 100_000 + 1)

    @property
    def track_url(self) -> str:
        return TRACK_URLS[self.region]

    @classmethod
    def parse(cls, spec: str) -> Workspace:
        """``SITE_ID:API_KEY[:REGION][:RATE][:APP_API_KEY]``, e.g. ``site1:key1:eu:100``,
        ``site1:key1::50`` or ``site1:key1:::appkey1`` (an App API key, no rate limit)."""
        parts = spec.strip().split(":")
        if len(parts) < 2 or len(parts) > 5 or not parts[0] or not parts[1]:
            raise ValueError(
                f"workspace {parts[0]!r}: expected SITE_ID:API_KEY[:REGION][:RATE][:APP_API_KEY]"
            )
        app_api_key = parts.pop() if len(parts) == 5 else ""
        site_id, api_key, *rest = parts
        region, rate = "us", None
        if rest and rest[0].isdigit() and len(rest) == 1:
            rest = ["", rest[0]]  # "SITE:KEY:50" reads as a rate, not a region
        if rest and rest[0]:
            region = rest[0].lower()
        if len(rest) > 1 and rest[1]:
            if not rest[1].isdigit():
                raise ValueError(f"workspace {site_id!r}: RATE must be a positive integer")
            rate = int(rest[1])
        return cls(site_id, api_key, region=region, rate_limit=rate, app_api_key=app_api_key)

    @classmethod
    def from_json(cls, data: Any) -> Workspace:
        if not isinstance(data, dict):
            raise ValueError("a workspace is a JSON object")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown workspace fields: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as error:  # a missing site_id or api_key
            raise ValueError(str(error)) from None

    def to_json(self) -> dict[str, Any]:
        """Everything but the API keys."""
        return {
            "site_id": self.site_id,
            "region": self.region,
            "rate_limit": self.rate_limit,
            "environment_id": self.environment_id,
            "has_app_api_key": bool(self.app_api_key),
        }


class BodyError(Exception):
    """A request body could not be read; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection before sending the whole body (it was killed, or gave up).

    Customer.io sees no request then, only a broken connection: nothing is answered or applied,
    and the truncated body is not taken for an invalid one.
    """


def _check_share(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1")


@dataclass(frozen=True)
class Faults:
    """Faults to inject into write requests (v1 identify and v2 batch).

    For each write request one draw decides, in this order of shares (they must add up to at
    most 1): ``drop_share`` closes the connection without answering; ``timeout_share`` sleeps
    ``timeout_seconds`` then answers 504; ``share`` answers a status picked from ``statuses``
    (with ``Retry-After: retry_after`` on 429 and 503). Such requests change nothing.
    Independently ``delay_share`` of write requests are answered ``delay_ms`` later (and are
    applied), and each action of a v2 batch fails with ``partial_207_share`` (a 207 item error;
    that action is not applied). ``site_id`` limits the faults to one workspace. ``seed``
    reseeds the stand-in's random generator when the faults are set, for repeatable tests.
    """

    share: float = 0.0
    statuses: tuple[int, ...] = (500,)
    retry_after: int | None = 1
    delay_ms: int = 0
    delay_share: float = 1.0
    timeout_share: float = 0.0
    timeout_seconds: float = 10.0
    drop_share: float = 0.0
    partial_207_share: float = 0.0
    site_id: str | None = None
    seed: int | None = None
    path_contains: str | None = None  # only requests whose path holds this (e.g. "/segments/")

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", tuple(self.statuses))
        for name in ("share", "delay_share", "timeout_share", "drop_share", "partial_207_share"):
            _check_share(name, getattr(self, name))
        if self.share + self.timeout_share + self.drop_share > 1 + 1e-9:
            raise ValueError("share + timeout_share + drop_share must be at most 1")
        if self.share and not self.statuses:
            raise ValueError("statuses must not be empty when share > 0")
        for status in self.statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
                raise ValueError("statuses must be HTTP status codes from 200 to 599")
        if self.retry_after is not None and (
            not isinstance(self.retry_after, int) or self.retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative integer or null")
        if not isinstance(self.delay_ms, int) or self.delay_ms < 0:
            raise ValueError("delay_ms must be a non-negative integer")
        if self.site_id is not None and not isinstance(self.site_id, str):
            raise ValueError("site_id must be a string or null")
        if self.path_contains is not None and (not isinstance(self.path_contains, str) or not self.path_contains):
            raise ValueError("path_contains must be a non-empty string or null")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError("seed must be an integer or null")
        if not isinstance(self.timeout_seconds, (int, float)) or not (
            0 <= self.timeout_seconds < math.inf
        ):
            raise ValueError("timeout_seconds must be a non-negative number")

    @property
    def active(self) -> bool:
        return bool(
            self.share or self.timeout_share or self.drop_share or self.partial_207_share
            or (self.delay_ms and self.delay_share)
        )

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        if not isinstance(data, dict):
            raise ValueError("faults are a JSON object")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        if "statuses" in data and not isinstance(data["statuses"], list):
            raise ValueError("statuses must be a list of HTTP status codes")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["statuses"] = list(self.statuses)
        return data


@dataclass(slots=True)
class RecordedRequest:
    """One Track or App API request as the stand-in saw it. Never holds an API key."""

    index: int
    monotonic: float  # time.monotonic() when it was admitted: compare with rate limits
    wall_time: float  # time.time() at the same moment
    method: str
    path: str
    site_id: str | None  # None when the credentials were missing or wrong
    identifiers: list[str]
    body: Any  # the parsed JSON (None when unparseable or not kept: record_bodies=False)
    status: int | None = None  # None: the connection was dropped without an answer
    valid: bool | None = None  # None: the body was not validated (sampled out, or no body)
    errors: list[str] = field(default_factory=list)
    fault: str | None = None  # "status", "drop", "timeout", "delay", "partial_207"
    notes: list[str] = field(default_factory=list)  # what a valid request did not do (ids matching nobody)
    answered: float | None = None  # time.monotonic() once its effect was recorded, just before the answer

    @property
    def applied(self) -> bool:
        """Whether the request changed anything (all of it, or some actions on a 207)."""
        return self.status in (200, 207)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "monotonic": self.monotonic,
            "wall_time": self.wall_time,
            "method": self.method,
            "path": self.path,
            "site_id": self.site_id,
            "identifiers": self.identifiers,
            "body": self.body,
            "status": self.status,
            "valid": self.valid,
            "errors": self.errors,
            "fault": self.fault,
            "notes": self.notes,
            "answered": self.answered,
        }
