"""Readable messages from jsonschema's errors against Customer.io's OpenAPI document.

jsonschema reports a failed ``anyOf`` as "is not valid under any of the given schemas"; the
functions here say instead why the closest alternative failed. ``problems`` gives
``(field, message)`` pairs (a 207 item error's shape); ``format_problems`` "<where>: <what>".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError

# Keys whose value picks the alternative of an ``anyOf`` (the document's "discriminators").
_DISCRIMINATORS = ("type", "action")


def _relative_path(leaf: ValidationError, depth: int) -> list[Any]:
    return list(leaf.absolute_path)[depth:]


def _mismatched_discriminators(leaves: list[ValidationError], depth: int) -> set[str]:
    """Which discriminator keys of the instance at ``depth`` the ``leaves`` reject."""
    keys = set()
    for leaf in leaves:
        rest = _relative_path(leaf, depth)
        if len(rest) == 1 and rest[0] in _DISCRIMINATORS and leaf.validator in ("enum", "const"):
            keys.add(rest[0])
    return keys


def _summary(message: str, like: ValidationError, validator: str, value: Any) -> ValidationError:
    """A new error at the same place as ``like`` (the summaries below are built from these)."""
    return ValidationError(
        message,
        validator=validator,
        validator_value=value,
        instance=like.instance,
        path=list(like.absolute_path),
    )


def _explain(error: ValidationError) -> list[ValidationError]:
    """The errors worth reporting for ``error``.

    jsonschema reports a failed ``anyOf`` as "is not valid under any of the given schemas",
    which says nothing useful. Instead: drop the alternatives meant for another ``type`` or
    ``action`` and report why the closest remaining alternative failed; when every alternative
    is for another ``action`` (or ``type``), say which ones exist.
    """
    if error.validator != "anyOf" or not error.context:
        return [error]
    depth = len(error.absolute_path)
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).extend(_explain(sub))
    by_rank: dict[int, list[list[ValidationError]]] = {0: [], 1: [], 2: []}
    for leaves in branches.values():
        mismatched = _mismatched_discriminators(leaves, depth)
        by_rank[2 if "type" in mismatched else 1 if "action" in mismatched else 0].append(leaves)
    if by_rank[0]:
        return _combine(error, by_rank[0])
    key, closest = ("action", by_rank[1]) if by_rank[1] else ("type", by_rank[2])
    rejections = [
        leaf for leaves in closest for leaf in leaves if _relative_path(leaf, depth) == [key]
    ]
    known = sorted(
        {
            str(value)
            for leaf in rejections
            for value in (
                leaf.validator_value if leaf.validator == "enum" else [leaf.validator_value]
            )
        }
    )
    value = rejections[0].instance
    return [_summary(f"{value!r} is not a known {key} (known: {', '.join(known)})",
                     rejections[0], "enum", known)]


def _combine(error: ValidationError, candidates: list[list[ValidationError]]) -> list[ValidationError]:
    """Merge alternatives that fail in the same simple way on the instance itself (a wrong
    ``type``, or a missing property) into one message; otherwise report the alternative with
    the fewest errors."""
    singles = [leaves[0] for leaves in candidates if len(leaves) == 1]
    if (
        len(candidates) > 1
        and len(singles) == len(candidates)
        and all(leaf.absolute_path == error.absolute_path for leaf in singles)
    ):
        kinds = {leaf.validator for leaf in singles}
        if kinds == {"type"}:
            types = [leaf.validator_value for leaf in singles]
            listed = ", ".join(repr(name) for name in types)
            return [_summary(f"{error.instance!r} is not of any of the types {listed}",
                             error, "type", types)]
        if kinds == {"required"} and isinstance(error.instance, dict):
            names = [
                name
                for leaf in singles
                for name in leaf.validator_value
                if name not in error.instance
            ]
            listed = ", ".join(repr(name) for name in names)
            return [_summary(f"{error.instance!r} needs one of the properties {listed}",
                             error, "required", names)]
    return min(candidates, key=len)


def problems(errors: Iterable[ValidationError]) -> list[tuple[str, str]]:
    """``(field, message)`` for each failing location; field is a "/"-joined path, "" for the
    instance itself."""
    problems = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        for leaf in _explain(error):
            problems.append(("/".join(str(part) for part in leaf.absolute_path), leaf.message))
    return problems


def format_problems(problems: Iterable[tuple[str, str]], prefix: str = "") -> list[str]:
    return [
        f"{'/'.join(part for part in (prefix, field) if part) or 'body'}: {message}"
        for field, message in problems
    ]


