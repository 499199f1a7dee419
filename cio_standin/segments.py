"""Manual segments: the Track API's add/remove endpoints and the App API's segment creation
(pure: no HTTP here; see ``track.py`` for the ``Outcome`` contract).

- ``POST /api/v1/segments/{segment_id}/add_customers`` and ``.../remove_customers``
  (HTTP Basic): ``{"ids": [...]}`` (1 to 1,000 strings, validated against the OpenAPI
  document) naming people by the ``id_type`` query parameter (``id``, the default, ``email``
  or ``cio_id``). Ids that match nobody are ignored, as Customer.io does, and noted on the
  recorded request. A segment that does not exist answers 404.
- ``POST /v1/segments`` (App API, ``Authorization: Bearer <App API key>``):
  ``{"segment": {"name": ..., "description": ...}}`` creates an empty manual segment and
  answers ``{"segment": {...}}`` with its id. ``GET /v1/segments`` lists them.
"""

from __future__ import annotations

from typing import Any

from . import contract
from .model import RecordedRequest, Workspace
from .state import State
from .track import Outcome, parse_body, reject

MAX_SEGMENT_ID = 2**31 - 1  # the path parameter is an int32 in the OpenAPI document
MAX_SEGMENT_NAME_CHARS = 255


def change_segment(
    state: State,
    workspace: Workspace,
    operation: str,
    raw_segment_id: str,
    id_type: str | None,
    raw: bytes,
    record: RecordedRequest,
) -> Outcome:
    """``add_customers`` / ``remove_customers``."""
    body, parse_error = parse_body(raw)
    record.body = body
    if parse_error:
        return reject(record, 400, [parse_error], v2=False)
    segment_id = int(raw_segment_id)
    errors = contract.segment_id_type_errors(id_type)
    if segment_id < 1 or segment_id > MAX_SEGMENT_ID:
        errors.append(f"segment_id: {raw_segment_id} is not a valid segment id")
    errors += contract.validate_segment_body(operation, body)
    if errors:
        return reject(record, 400, errors, v2=False)
    record.valid = True
    ids: list[str] = body["ids"]
    record.identifiers = list(ids)
    if not state.directory.has_segment(workspace.site_id, segment_id):
        message = f"segment {segment_id} not found; create the manual segment first"
        record.errors = [message]
        return Outcome(404, {"meta": {"error": message}})

    def apply() -> None:
        change = state.directory.change_segment(workspace.site_id, segment_id, operation, id_type or "id", ids)
        state.count_applied(workspace.site_id)
        if change.ignored:
            record.notes.append(f"ignored {len(change.ignored)} ids matching nobody: {', '.join(change.ignored[:20])}")

    return Outcome(200, {}, apply)


def _segment_body_errors(body: Any) -> list[str]:
    # The App API's document is not part of the reference material: these are the shapes its
    # documentation shows for "Create a manual segment" (segment.name required, description text).
    if not isinstance(body, dict) or set(body) != {"segment"}:
        return ['body: must be {"segment": {"name": ..., "description": ...}}']
    segment = body["segment"]
    if not isinstance(segment, dict):
        return ["segment: must be an object"]
    errors = []
    unknown = sorted(set(segment) - {"name", "description"})
    if unknown:
        errors.append(f"segment: unknown fields {', '.join(unknown)}")
    name = segment.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("segment/name: required, a non-empty string")
    elif len(name) > MAX_SEGMENT_NAME_CHARS:
        errors.append(f"segment/name: longer than {MAX_SEGMENT_NAME_CHARS} characters")
    if "description" in segment and not isinstance(segment["description"], str):
        errors.append("segment/description: must be a string")
    return errors


def create_segment(state: State, workspace: Workspace, raw: bytes, record: RecordedRequest) -> Outcome:
    """App API ``POST /v1/segments``."""
    body, parse_error = parse_body(raw)
    record.body = body
    if parse_error:
        return reject(record, 400, [parse_error], v2=False)
    errors = _segment_body_errors(body)
    if errors:
        return reject(record, 400, errors, v2=False)
    record.valid = True
    segment = body["segment"]
    created: dict[str, Any] = {}

    def apply() -> None:
        made = state.directory.create_segment(workspace.site_id, segment["name"], segment.get("description", ""))
        created.update(made.to_json())
        record.notes.append(f"created segment {made.id}")

    # The id is only known once applied: the payload is filled in by apply(), before answering.
    return Outcome(200, {"segment": created}, apply)


def list_segments(state: State, workspace: Workspace, raw: bytes, record: RecordedRequest) -> Outcome:
    """App API ``GET /v1/segments``."""
    return Outcome(200, {"segments": state.directory.segments(workspace.site_id)})
