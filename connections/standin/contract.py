"""Customer.io's Track API request bodies, checked against Customer.io's own OpenAPI document.

The document (``customerio-track-openapi.json``, a byte-identical copy of
``reference/customerio-track-openapi.json``) is the contract. As the reference README says,
its ``oneOf`` lists overlap (an ``id``, an ``email`` and a ``cio_id`` are all plain strings), so
every ``oneOf`` is turned into ``anyOf`` before validating with jsonschema (Draft 2020-12).
``$ref``s resolve against the whole document.

Public, stable functions (the product's own tests import them):

- ``validate_v1_identify_body(body) -> list[str]``: body of ``PUT /api/v1/customers/{identifier}``.
- ``validate_v2_batch_body(body) -> list[str]``: body of ``POST /api/v2/batch``.
- ``validate_v2_batch_action(action) -> list[str]``: one item of ``batch`` (for 207 item errors).
- ``v1_limit_errors(identifier, body)``: the size limits Customer.io documents, which the
  schema does not express (``v2_action_limit_problems`` for one v2 action).

Each returns error messages ("<where>: <what>"); an empty list means valid. The ``*_problems``
variants return ``(field, message)`` pairs instead, for 207 item errors. No Django imports.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = Path(__file__).with_name("customerio-track-openapi.json")

# A made-up absolute URI for the document, so that "#/components/..." references inside it
# resolve against the whole document wherever a sub-schema is used from.
_DOCUMENT_URI = "urn:customerio:track-openapi"

V1_IDENTIFY_PATH = "/api/v1/customers/{identifier}"
V2_BATCH_PATH = "/api/v2/batch"

# Customer.io's documented limits (reference/README.md, SPEC §2). KB = 1024 bytes; the batch
# and the action must be strictly under their limit.
MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_CALL = 300
MAX_ACTION_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


def _one_of_to_any_of(node: Any) -> Any:
    """Return a copy of ``node`` with every ``oneOf`` key renamed to ``anyOf``."""
    if isinstance(node, dict):
        return {
            ("anyOf" if key == "oneOf" else key): _one_of_to_any_of(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_one_of_to_any_of(item) for item in node]
    return node


@functools.cache
def load_document() -> dict[str, Any]:
    """The OpenAPI document as published (not relaxed)."""
    with OPENAPI_PATH.open("rb") as handle:
        return json.load(handle)


@functools.cache
def _relaxed_document() -> dict[str, Any]:
    """The document with every ``oneOf`` turned into ``anyOf`` (see the module docstring)."""
    return _one_of_to_any_of(load_document())


@functools.cache
def _registry() -> Registry:
    resource = DRAFT202012.create_resource(_relaxed_document())
    # crawl() once up front so that later look-ups do not re-walk the 500 KB document.
    return Registry().with_resource(_DOCUMENT_URI, resource).crawl()


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``, percent-encoded for use as a URI fragment."""
    escaped = "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)
    return quote("/" + escaped, safe="/~")


def _request_body_pointer(path: str, method: str) -> str:
    return _pointer(
        "paths", path, method, "requestBody", "content", "application/json", "schema"
    )


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.lstrip("/").split("/"):
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class _Cycle(Exception):
    pass


def _inline(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every local ``$ref`` replaced by what it points to.

    The same verdicts as resolving references while validating, but jsonschema validates a
    self-contained schema about twice as fast (no registry look-up per ``$ref``), which is
    what lets the stand-in validate every body of a benchmark.
    """
    if isinstance(node, list):
        return [_inline(document, item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        if ref in seen:
            raise _Cycle(ref)
        target = _inline(document, _resolve(document, ref[1:]), (*seen, ref))
        siblings = {key: _inline(document, value, seen) for key, value in node.items() if key != "$ref"}
        # In Draft 2020-12 a $ref applies alongside its sibling keywords, as allOf does.
        return {"allOf": [target], **siblings} if siblings else target
    return {key: _inline(document, value, seen) for key, value in node.items()}


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    """A validator for the sub-schema at ``pointer`` of the relaxed document, built once and
    reused (thread-safe: validators are immutable)."""
    relaxed = _relaxed_document()
    try:
        return Draft202012Validator(_inline(relaxed, _resolve(relaxed, pointer)))
    except _Cycle:
        # A recursive schema cannot be inlined: resolve references against the document.
        return Draft202012Validator({"$ref": f"{_DOCUMENT_URI}#{pointer}"}, registry=_registry())


def v1_identify_validator() -> Draft202012Validator:
    return _validator(_request_body_pointer(V1_IDENTIFY_PATH, "put"))


def v2_batch_validator() -> Draft202012Validator:
    return _validator(_request_body_pointer(V2_BATCH_PATH, "post"))


def v2_action_validator() -> Draft202012Validator:
    return _validator(_request_body_pointer(V2_BATCH_PATH, "post") + "/properties/batch/items")


def _identify_person_validator() -> Draft202012Validator:
    return _validator(_pointer("components", "schemas", "identify_person"))


def warm_up() -> None:
    """Load the document and build every validator now, not on the first request."""
    v1_identify_validator()
    v2_batch_validator()
    v2_action_validator()
    _identify_person_validator()


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


def _problems(errors: Iterable[ValidationError]) -> list[tuple[str, str]]:
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


def _messages(errors: Iterable[ValidationError], prefix: str = "") -> list[str]:
    return format_problems(_problems(errors), prefix)


def validate_v1_identify_body(body: Any) -> list[str]:
    """Errors in a ``PUT /api/v1/customers/{identifier}`` body (empty list = valid)."""
    return _messages(v1_identify_validator().iter_errors(body))


def validate_v2_batch_action(action: Any, index: int | None = None) -> list[str]:
    """Errors in one action of a v2 batch (empty list = valid); ``index`` prefixes the
    locations with ``batch/<index>``."""
    return format_problems(v2_action_problems(action), "" if index is None else f"batch/{index}")


def v2_action_problems(action: Any) -> list[tuple[str, str]]:
    """``(field, message)`` for each error in one action of a v2 batch (a 207 item error).

    Most actions the product sends are person identifies; checking that one alternative first
    gives the same answer as the whole ``anyOf`` (valid under one alternative = valid) at a
    fraction of the cost. Only a failing action pays for the full check and its message.
    """
    if (
        isinstance(action, dict)
        and action.get("type") == "person"
        and action.get("action") == "identify"
        and _identify_person_validator().is_valid(action)
    ):
        return []
    return _problems(v2_action_validator().iter_errors(action))


def v2_envelope_problems(body: Any) -> list[tuple[str, str]]:
    """Errors in a v2 batch body outside its actions (the actions are not looked at)."""
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        return _problems(v2_batch_validator().iter_errors({**body, "batch": []}))
    return _problems(v2_batch_validator().iter_errors(body))


def validate_v2_batch_body(body: Any) -> list[str]:
    """Errors in a ``POST /api/v2/batch`` body (empty list = valid)."""
    # Same verdict as validating the whole body in one go, but per action so that the fast
    # path for person identifies applies.
    errors = format_problems(v2_envelope_problems(body))
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        for index, action in enumerate(body["batch"]):
            errors.extend(validate_v2_batch_action(action, index))
    return errors


# --- Limits the schema does not express -----------------------------------------------------


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
