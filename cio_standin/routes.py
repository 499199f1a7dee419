"""Every Customer.io endpoint the stand-in answers, in one table (the control API is ``control.py``).

A route names the method, the path (a regular expression over the raw, still percent-encoded
path), how the request is authenticated and the endpoint that answers it. ``auth`` is
``"track"`` (HTTP Basic with a workspace's Site ID and Track API key; counted by the
workspace's rate limit; write requests may draw an injected fault) or ``"app"`` (Bearer with
a workspace's App API key; neither rate limited nor faulted). An endpoint is pure: it checks
the request, fills in the ``RecordedRequest`` and returns an ``Outcome`` whose ``apply`` runs
only if no fault was drawn (``track.py``).

To answer a new endpoint, add a row here and its function in a module of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

from . import erasure, segments, track
from .model import RecordedRequest, Workspace
from .state import State
from .track import Outcome


@dataclass(frozen=True)
class Call:
    """What an endpoint gets besides the state and the workspace."""

    params: dict[str, str]  # the path's named groups, still percent-encoded
    query: dict[str, list[str]]
    raw: bytes  # the body as received
    record: RecordedRequest

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


Endpoint = Callable[[State, Workspace, Call], Outcome]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a regular expression matched against the whole path
    auth: Literal["track", "app"]
    endpoint: Endpoint
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.path))


def _v1_identify(state: State, workspace: Workspace, call: Call) -> Outcome:
    return track.v1_identify(state, workspace, unquote(call.params["identifier"]), call.raw, call.record)


def _v2_batch(state: State, workspace: Workspace, call: Call) -> Outcome:
    return track.v2_batch(state, workspace, call.raw, call.record)


def _region(state: State, workspace: Workspace, call: Call) -> Outcome:
    return Outcome(
        200, {"url": workspace.track_url, "region": workspace.region, "environment_id": workspace.environment_id}
    )


def _segment_change(operation: str) -> Endpoint:
    def endpoint(state: State, workspace: Workspace, call: Call) -> Outcome:
        return segments.change_segment(
            state, workspace, operation, call.params["segment_id"], call.query_value("id_type"), call.raw, call.record
        )

    return endpoint


def _person_call(operation: str) -> Endpoint:
    def endpoint(state: State, workspace: Workspace, call: Call) -> Outcome:
        identifier = unquote(call.params["identifier"])
        return erasure.person_call(state, workspace, operation, identifier, call.raw, call.record)

    return endpoint


def _create_segment(state: State, workspace: Workspace, call: Call) -> Outcome:
    return segments.create_segment(state, workspace, call.raw, call.record)


def _list_segments(state: State, workspace: Workspace, call: Call) -> Outcome:
    return segments.list_segments(state, workspace, call.raw, call.record)


ROUTES: tuple[Route, ...] = (
    # Track API
    Route("PUT", r"/api/v1/customers/(?P<identifier>[^/]+)", "track", _v1_identify),
    Route("POST", r"/api/v2/batch", "track", _v2_batch),
    Route("GET", r"/api/v1/accounts/region", "track", _region),
    Route("POST", r"/api/v1/segments/(?P<segment_id>[0-9]{1,10})/add_customers", "track",
          _segment_change("add_customers")),
    Route("POST", r"/api/v1/segments/(?P<segment_id>[0-9]{1,10})/remove_customers", "track",
          _segment_change("remove_customers")),
    Route("DELETE", r"/api/v1/customers/(?P<identifier>[^/]+)", "track", _person_call("delete")),
    Route("POST", r"/api/v1/customers/(?P<identifier>[^/]+)/suppress", "track", _person_call("suppress")),
    Route("POST", r"/api/v1/customers/(?P<identifier>[^/]+)/unsuppress", "track", _person_call("unsuppress")),
    # App API
    Route("POST", r"/v1/segments", "app", _create_segment),
    Route("GET", r"/v1/segments", "app", _list_segments),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method and (found := route.pattern.fullmatch(path)):
            return route, found.groupdict()
    return None
