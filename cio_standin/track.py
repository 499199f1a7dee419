"""Checking Track API write bodies and working out their effect (pure: no HTTP here).

Each function fills in the ``RecordedRequest`` (identifiers, body, validity, errors) and returns
an ``Outcome``: the answer to give and a deferred ``apply`` that the handler runs only when no
fault was drawn for the request, so a faulted request never changes anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import contract
from .model import RecordedRequest, Workspace
from .state import State


def _nothing() -> None:
    pass


@dataclass
class Outcome:
    status: int
    payload: Any
    apply: Callable[[], None] = field(default=_nothing)


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"body is not valid JSON: {error}"


def _meta_error(errors: list[str]) -> dict[str, Any]:
    # Customer.io answers {"meta": {"error": "..."}}; its OpenAPI document describes
    # {"meta": {"errors": [...]}} for 400s. Give both so either reading works.
    return {"meta": {"error": "; ".join(errors), "errors": errors}}


def reject(record: RecordedRequest, status: int, errors: list[str], *, v2: bool) -> Outcome:
    record.valid = False
    record.errors = errors
    payload = _meta_error(errors)
    if v2:
        # The v2 400 shape in the OpenAPI document: {"errors": [{reason, field, message}]}.
        payload["errors"] = [
            {"reason": "invalid", "field": "", "message": message} for message in errors
        ]
    return Outcome(status, payload)


def v1_identify(
    state: State, workspace: Workspace, identifier: str, raw: bytes, record: RecordedRequest
) -> Outcome:
    """``PUT /api/v1/customers/{identifier}``: merge a flat attribute object into the person."""
    record.identifiers = [identifier]
    body, parse_error = parse_body(raw)
    record.body = body
    if parse_error:
        return reject(record, 400, [parse_error], v2=False)
    if state.should_validate():
        errors = contract.validate_v1_identify_body(body)
        record.valid = not errors
    elif not isinstance(body, dict):
        errors = ["body: must be a JSON object"]
    else:
        errors = []
    if isinstance(body, dict):
        errors += contract.v1_limit_errors(identifier, body)
    if errors:
        return reject(record, 400, errors, v2=False)

    def apply() -> None:
        if not state.merge_person(workspace.site_id, identifier, body):
            record.notes.append(f"{identifier}: no such person; _update is true, so nobody was created")

    return Outcome(200, {}, apply)


def _person(identifiers: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, value)`` of the identifier an action names: ``id``, ``email``, ``cio_id`` or
    ``phone`` (the schema allows exactly one)."""
    for kind in ("id", "email", "cio_id", "phone"):
        value = identifiers.get(kind)
        if isinstance(value, str) and value:
            return kind, value
    return None


def _structure_problems(action: Any) -> list[tuple[str, str]]:
    """The minimum an action needs to be applied, checked when schema validation is sampled
    out (validate_share < 1)."""
    if not isinstance(action, dict):
        return [("", "action must be a JSON object")]
    problems = []
    if not isinstance(action.get("identifiers"), dict):
        problems.append(("identifiers", "identifiers must be a JSON object"))
    if "attributes" in action and not isinstance(action["attributes"], dict):
        problems.append(("attributes", "attributes must be a JSON object"))
    return problems


def v2_batch(state: State, workspace: Workspace, raw: bytes, record: RecordedRequest) -> Outcome:
    """``POST /api/v2/batch``: apply each valid action; 207 lists the ones that failed."""
    if len(raw) >= contract.MAX_BATCH_BYTES:
        message = (
            f"batch is {len(raw)} bytes; the limit is under {contract.MAX_BATCH_BYTES} bytes "
            "(500 KB)"
        )
        return reject(record, 413, [message], v2=True)
    body, parse_error = parse_body(raw)
    record.body = body
    if parse_error:
        return reject(record, 400, [parse_error], v2=True)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        return reject(record, 400, ["body: must be a JSON object with a 'batch' array"], v2=True)
    validate = state.should_validate()
    if validate:
        envelope = contract.v2_envelope_problems(body)
        if envelope:
            return reject(record, 400, contract.format_problems(envelope), v2=True)

    actions: list[Any] = body["batch"]
    # An action cannot be bigger than the body it came in, so small bodies skip measuring.
    measure = len(raw) >= contract.MAX_ACTION_BYTES
    item_errors: list[dict[str, Any]] = []
    messages: list[str] = []
    ok: list[tuple[int, Any]] = []
    for index, action in enumerate(actions):
        invalid = contract.v2_action_problems(action) if validate else _structure_problems(action)
        size = contract.json_size(action) if measure else None
        too_large = contract.v2_action_limit_problems(action, size)
        for reason, problems in (("invalid", invalid), ("too_large", too_large)):
            for where, message in problems:
                item_errors.append(
                    {"batch_index": index, "reason": reason, "field": where, "message": message}
                )
            messages += contract.format_problems(problems, f"batch/{index}")
        if not invalid and not too_large:
            ok.append((index, action))
    record.identifiers = [
        person[1]
        for action in actions
        if isinstance(action, dict) and isinstance(action.get("identifiers"), dict)
        and (person := _person(action["identifiers"])) is not None
    ]
    record.errors = messages
    record.valid = (not item_errors) if validate else (False if item_errors else None)

    # Injected partial failures: valid actions that fail as if Customer.io had refused them.
    failures = state.draw_item_failures(workspace.site_id, len(ok))
    injected = [index for (index, _), failed in zip(ok, failures, strict=True) if failed]
    if injected:
        record.fault = "partial_207"
        state.count_fault("partial_207_items", len(injected))
        for index in injected:
            item_errors.append({
                "batch_index": index, "reason": "stand-in fault", "field": "",
                "message": "injected failure (stand-in partial_207_share)",
            })
        item_errors.sort(key=lambda error: error["batch_index"])
    changes = [
        (action.get("action"), *person, action.get("attributes") or {})
        for (_, action), failed in zip(ok, failures, strict=True)
        if not failed and action.get("type") == "person"
        and (person := _person(action["identifiers"])) is not None
    ]

    def apply() -> None:
        for value in state.apply_actions(workspace.site_id, changes):
            record.notes.append(f"{value}: no such person; _update is true, so nobody was created")

    if item_errors:
        return Outcome(207, {"errors": item_errors}, apply)
    return Outcome(200, {}, apply)
