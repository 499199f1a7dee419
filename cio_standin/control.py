"""The stand-in's control API, under ``/_standin/`` (no auth: the stand-in is for 127.0.0.1).

=======  ===========================================  =========================================
method   path                                         answer
=======  ===========================================  =========================================
GET      /_standin/health                             ``{"ok": true}``
GET      /_standin/people?site_id=S                   ``{"people": {id: attributes}}``
                                                      (site_id may be left out when there is
                                                      only one workspace)
GET      /_standin/tally?site_id=S&attribute=A     ``{"people": n, "values": {value: n},
                                                      "segment_members": {id: n}}``: counts
                                                      for workspaces too large to list
GET      /_standin/requests?site_id=S&since=N&limit=M ``{"requests": [...], "next": N2}``:
                                                      recorded requests from list position N
                                                      (default 0, at most M, default 1000); ask
                                                      again with ``since=N2`` for more
GET      /_standin/suppressed?site_id=S           ``{"suppressed": [identifier, ...]}``
GET      /_standin/invalid                            ``{"requests": [...]}``: bodies that did
                                                      not validate
GET      /_standin/stats                              counters: requests, by_status,
                                                      invalid_bodies, validated_bodies, faults,
                                                      and per workspace the same plus people,
                                                      max_requests_in_1s, max_accepted_in_1s
GET      /_standin/faults                             the current faults
POST     /_standin/faults                             set faults; body: any fields of ``Faults``
                                                      (share, statuses, retry_after, delay_ms,
                                                      delay_share, timeout_share,
                                                      timeout_seconds, drop_share,
                                                      partial_207_share, site_id, seed), e.g.
                                                      ``{"share": 0.3, "statuses": [429, 503],
                                                      "seed": 1}``; fields left out take their
                                                      defaults (no fault)
DELETE   /_standin/faults                             no more faults
GET      /_standin/outage                             the outage under way (or null) and how
                                                      many requests outages have failed
POST     /_standin/outage                             ``{"mode": "503"|"hang"|"refuse",
                                                      "seconds": N}``: every Track request
                                                      fails that way for N seconds (outage.py)
DELETE   /_standin/outage                             end the outage now (not "refuse")
GET      /_standin/workspaces                         ``{"workspaces": [...]}`` (no API keys)
POST     /_standin/workspaces                         add or replace one: ``{"site_id",
                                                      "api_key", "region", "rate_limit",
                                                      "app_api_key"}`` (app_api_key optional:
                                                      the App API's Bearer key)
GET      /_standin/segments?site_id=S                 ``{"site_id", "segments": [{"id", "name",
                                                      "description", "type", ..., "members":
                                                      [id, or email for people without an
                                                      id]}]}``
POST     /_standin/segments                           create a manual segment without the App
                                                      API: ``{"site_id", "name",
                                                      "description"}``; answers the segment
POST     /_standin/reset                              forget people, requests, counters, faults
=======  ===========================================  =========================================

Errors are 400 ``{"error": "..."}``; unknown paths 404.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from . import erasure
from .model import BodyError, Faults, Workspace
from .outage import Outage
from .ports import Exchange

DEFAULT_PAGE = 1000


class ControlError(Exception):
    pass


def _json_body(handler: Exchange) -> Any:
    raw = handler.read_body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ControlError(f"body is not valid JSON: {error}") from None


def _int_param(params: dict[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise ControlError(f"{name} must be an integer") from None


def _site_id(handler: Exchange, params: dict[str, list[str]], *, required: bool) -> str | None:
    values = params.get("site_id")
    if values:
        return values[0]
    if not required:
        return None
    workspaces = handler.server.state.workspaces()
    if len(workspaces) == 1:
        return workspaces[0].site_id
    raise ControlError("site_id is required when there is not exactly one workspace")


def _outage_json(state: Any) -> dict[str, Any]:
    outage = state.outage.current()
    return {"outage": outage.to_json() if outage else None, "failed_requests": state.outage.failed_requests}


def _create_segment(handler: Exchange, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ControlError("a segment is a JSON object")
    unknown = set(body) - {"site_id", "name", "description"}
    if unknown:
        raise ControlError(f"unknown segment fields: {', '.join(sorted(unknown))}")
    site_id = body.get("site_id")
    if site_id is None:
        site_id = _site_id(handler, {}, required=True)
    if site_id not in {w.site_id for w in handler.server.state.workspaces()}:
        raise ControlError(f"no workspace {site_id!r}")
    name, description = body.get("name"), body.get("description", "")
    if not isinstance(name, str) or not name.strip() or not isinstance(description, str):
        raise ControlError("name (a non-empty string) is required; description must be a string")
    return handler.server.state.directory.create_segment(site_id, name, description).to_json()


def handle_control(handler: Exchange, path: str, query: str) -> None:
    try:
        status, payload = _route(handler, handler.command, path.rstrip("/"), parse_qs(query))
    except BodyError as error:
        handler.close_connection = True  # the body was not read: the stream is out of step
        status, payload = error.status, {"error": str(error)}
    except ControlError as error:
        status, payload = 400, {"error": str(error)}
    except ValueError as error:  # from Faults / Workspace validation
        status, payload = 400, {"error": str(error)}
    handler.respond(status, payload)


def _route(
    handler: Exchange, method: str, path: str, params: dict[str, list[str]]
) -> tuple[int, Any]:
    state = handler.server.state
    # Bodies are read up front so that a keep-alive connection stays in step whatever happens.
    body = _json_body(handler) if method in ("POST", "PUT", "PATCH", "DELETE") else None
    if method == "GET":
        if path == "/_standin/health":
            return 200, {"ok": True}
        if path == "/_standin/people":
            site_id = _site_id(handler, params, required=True)
            assert site_id is not None
            return 200, {"site_id": site_id, "people": state.people(site_id)}
        if path == "/_standin/tally":
            site_id = _site_id(handler, params, required=True)
            assert site_id is not None
            return 200, state.tally(site_id, params.get("attribute", [None])[0])
        if path == "/_standin/requests":
            since = _int_param(params, "since", 0)
            limit = _int_param(params, "limit", DEFAULT_PAGE)
            site_id = _site_id(handler, params, required=False)
            records, next_index = state.page(site_id, since, limit)
            return 200, {"requests": [r.to_json() for r in records], "next": next_index}
        if path == "/_standin/suppressed":  # erasure.py
            site_id = _site_id(handler, params, required=True)
            assert site_id is not None
            return 200, {"site_id": site_id, "suppressed": erasure.suppressed(state, site_id)}
        if path == "/_standin/invalid":
            return 200, {"requests": [r.to_json() for r in state.invalid_requests()]}
        if path == "/_standin/stats":
            return 200, state.stats()
        if path == "/_standin/faults":
            return 200, state.faults.to_json()
        if path == "/_standin/workspaces":
            return 200, {"workspaces": [w.to_json() for w in state.workspaces()]}
        if path == "/_standin/outage":
            return 200, _outage_json(state)
        if path == "/_standin/segments":
            site_id = _site_id(handler, params, required=True)
            assert site_id is not None
            return 200, {"site_id": site_id, "segments": state.directory.segments(site_id, with_members=True)}
    elif method == "POST":
        if path == "/_standin/outage":
            if not isinstance(body, dict):
                raise ControlError('expected {"mode": "503"|"hang"|"refuse", "seconds": N}')
            outage = Outage.start(body.get("mode"), body.get("seconds"))  # type: ignore[arg-type]
            if outage.mode == "refuse":
                handler.server.refuse_for(outage.remaining)
            else:
                state.outage.set(outage)
            return 200, _outage_json(state) if outage.mode != "refuse" else {"outage": outage.to_json()}
        if path == "/_standin/faults":
            faults = Faults.from_json(body)
            state.set_faults(faults)
            return 200, faults.to_json()
        if path == "/_standin/workspaces":
            workspace = Workspace.from_json(body)
            state.add_workspace(workspace)
            return 200, workspace.to_json()
        if path == "/_standin/segments":
            return 200, _create_segment(handler, body)
        if path == "/_standin/reset":
            state.reset()
            return 200, {"ok": True}
    elif method == "DELETE" and path == "/_standin/faults":
        state.set_faults(Faults())
        return 200, Faults().to_json()
    elif method == "DELETE" and path == "/_standin/outage":
        state.outage.set(None)
        return 200, _outage_json(state)
    return 404, {"error": f"no such control endpoint: {method} {path}"}
