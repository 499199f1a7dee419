"""The stand-in's person deletion and suppression (Track API, as Customer.io documents them).

``DELETE /api/v1/customers/{identifier}`` removes the person. ``POST .../{identifier}/suppress``
removes the person and keeps the identifier out: later identifies of it are answered 200 and
ignored, as Customer.io ignores "any future API calls referencing the specified ID".
``POST .../{identifier}/unsuppress`` lets it back in. The OpenAPI document defines no request
body for these operations, so a body is a contract violation (400, and kept as invalid).

Routed from ``handler._dispatch`` (one line); answered through the handler's own credential
check, rate limit and fault injection, so tests can make these calls fail like any write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .state import State
from .track import Outcome, _reject

if TYPE_CHECKING:
    from .handler import StandinHandler
    from .model import RecordedRequest, Workspace

PREFIX = "/api/v1/customers/"
MAX_IDENTIFIER_BYTES = 150
_OPERATIONS = {  # (method, path suffix) -> (what it does, its path in the OpenAPI document)
    ("DELETE", ""): ("delete", "/api/v1/customers/{identifier}"),
    ("POST", "/suppress"): ("suppress", "/api/v1/customers/{identifier}/suppress"),
    ("POST", "/unsuppress"): ("unsuppress", "/api/v1/customers/{identifier}/unsuppress"),
}


def _defines_no_body(document: dict[str, Any], path: str, method: str) -> bool:
    return "requestBody" not in document["paths"][path][method.lower()]


_DOCUMENT = json.loads(Path(__file__).with_name("customerio-track-openapi.json").read_text())
# Checked once, at import: if Customer.io's document ever gives these calls a body, this module must change.
assert all(_defines_no_body(_DOCUMENT, doc_path, method) for (method, _), (_, doc_path) in _OPERATIONS.items())


def route(method: str, path: str) -> tuple[str, str] | None:
    """(operation, identifier) for a person deletion or (un)suppression path, else None."""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    for (op_method, suffix), (operation, _) in _OPERATIONS.items():
        if method != op_method or (suffix and not rest.endswith(suffix)):
            continue
        segment = rest[: len(rest) - len(suffix)] if suffix else rest
        if segment and "/" not in segment:
            return operation, unquote(segment)
    return None


def handle(handler: StandinHandler, path: str, operation: str, identifier: str) -> None:
    """Answer one call: read the body, check credentials and limits, apply unless a fault was drawn."""
    from .model import BodyError

    try:
        raw = handler.read_body()
    except BodyError as error:
        handler.close_connection = True
        record = handler._new_record(path, None, None)
        record.errors = [str(error)]
        handler._finish(record, error.status, {"meta": {"error": str(error)}})
        return
    admitted = handler._admit(path)
    if admitted is None:
        return
    workspace, admission = admitted
    record = handler._new_record(path, workspace, admission)
    outcome = person_call(handler.server.state, workspace, operation, identifier, raw, record)
    handler._answer_write(record, admission, outcome)


def person_call(
    state: State, workspace: Workspace, operation: str, identifier: str, raw: bytes, record: RecordedRequest
) -> Outcome:
    record.identifiers = [identifier]
    errors = []
    if raw.strip():
        errors.append(f"body: the {operation} operation takes no request body (Customer.io's OpenAPI document)")
    if len(identifier.encode()) > MAX_IDENTIFIER_BYTES:
        errors.append(f"identifier: at most {MAX_IDENTIFIER_BYTES} bytes")
    record.valid = not errors
    if errors:
        return _reject(record, 400, errors, v2=False)

    def apply() -> None:
        with state.lock:
            people = state._people.setdefault(workspace.site_id, {})
            suppressed = state._suppressed.setdefault(workspace.site_id, set())
            if operation == "unsuppress":
                suppressed.discard(identifier)
                return
            people.pop(identifier, None)
            if "@" in identifier:
                # A workspace identifying people by id keeps the email as an attribute: that person goes too.
                for person_id in [p for p, attrs in people.items() if attrs.get("email") == identifier]:
                    people.pop(person_id)
            if operation == "suppress":
                suppressed.add(identifier)

    return Outcome(200, {}, apply)


def suppressed(state: State, site_id: str) -> list[str]:
    """The identifiers suppressed in a workspace, sorted (tests, and ``GET /_standin/suppressed``)."""
    with state.lock:
        return sorted(state._suppressed.get(site_id, set()))
