"""The stand-in's person deletion and suppression (Track API, as Customer.io documents them).

``DELETE /api/v1/customers/{identifier}`` removes the person. ``POST .../{identifier}/suppress``
removes the person and keeps the identifier out: later identifies of it are answered 200 and
ignored, as Customer.io ignores "any future API calls referencing the specified ID".
``POST .../{identifier}/unsuppress`` lets it back in. The OpenAPI document defines no request
body for these operations, so a body is a contract violation (400, and kept as invalid).

Three rows of ``routes.ROUTES``; answered through the handler's own credential check, rate
limit and fault injection, so tests can make these calls fail like any write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .state import State
from .track import Outcome, reject

if TYPE_CHECKING:
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
        return reject(record, 400, errors, v2=False)

    def apply() -> None:
        # An email in the path names the person holding that email (people.py finds them).
        state.directory.erase(workspace.site_id, operation, identifier)

    return Outcome(200, {}, apply)


def suppressed(state: State, site_id: str) -> list[str]:
    """The identifiers suppressed in a workspace, sorted (tests, and ``GET /_standin/suppressed``)."""
    return state.directory.suppressed(site_id)
