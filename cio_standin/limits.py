"""Customer.io's documented Track API limits, which the OpenAPI document does not express.

KB = 1024 bytes; the batch and the action must be strictly under their limit (reference/README.md,
SPEC §2). The ``*_problems`` functions return ``(field, message)`` pairs, for 207 item errors.
"""

from __future__ import annotations

import json
from typing import Any

from .explain import format_problems

MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_CALL = 300
MAX_ACTION_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON: how a client would send it."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _value_size(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else json_size(value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def attribute_limit_problems(
    attributes: dict[str, Any], prefix: str = ""
) -> list[tuple[str, str]]:
    """Customer.io's per-call attribute limits (count, name length, value length), as
    ``(field, message)``."""
    problems = []
    if len(attributes) > MAX_ATTRIBUTES_PER_CALL:
        problems.append((prefix, (
            f"{len(attributes)} attributes, more than the limit of "
            f"{MAX_ATTRIBUTES_PER_CALL} per call"
        )))
    for name, value in attributes.items():
        if len(name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            problems.append((_join(prefix, name), (
                f"attribute name is {len(name.encode())} bytes, longer than the limit of "
                f"{MAX_ATTRIBUTE_NAME_BYTES} bytes"
            )))
        size = _value_size(value)
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            problems.append((_join(prefix, name), (
                f"attribute value is {size} bytes, longer than the limit of "
                f"{MAX_ATTRIBUTE_VALUE_BYTES} bytes"
            )))
    return problems


def identifier_limit_problems(identifier: str, field: str) -> list[tuple[str, str]]:
    size = len(identifier.encode())
    if size > MAX_IDENTIFIER_BYTES:
        return [(field, (
            f"identifier is {size} bytes, longer than the limit of {MAX_IDENTIFIER_BYTES} bytes"
        ))]
    return []


def v1_limit_errors(identifier: str, body: dict[str, Any]) -> list[str]:
    """Limit errors for a v1 identify (the body's keys are the attributes)."""
    problems = identifier_limit_problems(identifier, "identifier")
    return format_problems(problems + attribute_limit_problems(body))


def v2_action_limit_problems(action: Any, size: int | None) -> list[tuple[str, str]]:
    """Limit errors for one v2 action whose compact JSON is ``size`` bytes (None: not
    measured, because the whole batch is smaller than the action limit)."""
    problems = []
    if size is not None and size >= MAX_ACTION_BYTES:
        problems.append(("", (
            f"action is {size} bytes; the limit is under {MAX_ACTION_BYTES} bytes (32 KB)"
        )))
    if isinstance(action, dict):
        identifiers = action.get("identifiers")
        if isinstance(identifiers, dict):
            for key, value in identifiers.items():
                if isinstance(value, str):
                    problems += identifier_limit_problems(value, f"identifiers/{key}")
        attributes = action.get("attributes")
        if isinstance(attributes, dict):
            problems += attribute_limit_problems(attributes, "attributes")
    return problems
