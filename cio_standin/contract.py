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
- ``validate_segment_body(operation, body) -> list[str]``: body of
  ``POST /api/v1/segments/{segment_id}/add_customers`` (or ``remove_customers``).
- ``segment_id_type_errors(id_type) -> list[str]``: the ``id_type`` query parameter of those.
- ``v1_limit_errors(identifier, body)``: the size limits Customer.io documents, which the
  schema does not express (``limits.py``; ``v2_action_limit_problems`` for one v2 action).

Each returns error messages ("<where>: <what>"); an empty list means valid. The ``*_problems``
variants return ``(field, message)`` pairs instead, for 207 item errors (``explain.py`` turns
jsonschema's errors into them). No Django imports.
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

from .explain import format_problems, problems
from .limits import (
    MAX_ACTION_BYTES,
    MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES_PER_CALL,
    MAX_BATCH_BYTES,
    MAX_IDENTIFIER_BYTES,
    attribute_limit_problems,
    identifier_limit_problems,
    json_size,
    v1_limit_errors,
    v2_action_limit_problems,
)

# Re-exported: tests and tools read the limits and the message helpers from here.
__all__ = [
    "MAX_ACTION_BYTES",
    "MAX_ATTRIBUTES_PER_CALL",
    "MAX_ATTRIBUTE_NAME_BYTES",
    "MAX_ATTRIBUTE_VALUE_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_IDENTIFIER_BYTES",
    "attribute_limit_problems",
    "format_problems",
    "identifier_limit_problems",
    "json_size",
    "segment_id_type_errors",
    "v1_limit_errors",
    "v2_action_limit_problems",
    "v2_action_problems",
    "v2_envelope_problems",
    "validate_segment_body",
    "validate_v1_identify_body",
    "validate_v2_batch_action",
    "validate_v2_batch_body",
    "warm_up",
]

OPENAPI_PATH = Path(__file__).with_name("customerio-track-openapi.json")

# A made-up absolute URI for the document, so that "#/components/..." references inside it
# resolve against the whole document wherever a sub-schema is used from.
_DOCUMENT_URI = "urn:customerio:track-openapi"

V1_IDENTIFY_PATH = "/api/v1/customers/{identifier}"
V2_BATCH_PATH = "/api/v2/batch"
SEGMENT_PATHS = {
    "add_customers": "/api/v1/segments/{segment_id}/add_customers",
    "remove_customers": "/api/v1/segments/{segment_id}/remove_customers",
}


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


def segment_validator(operation: str) -> Draft202012Validator:
    return _validator(_request_body_pointer(SEGMENT_PATHS[operation], "post"))


def warm_up() -> None:
    """Load the document and build every validator now, not on the first request."""
    v1_identify_validator()
    v2_batch_validator()
    v2_action_validator()
    _identify_person_validator()
    for operation in SEGMENT_PATHS:
        segment_validator(operation)


@functools.cache
def _id_type_schema() -> dict[str, Any]:
    return _resolve(load_document(), _pointer("components", "parameters", "id_type_segment", "schema"))


def _messages(errors: Iterable[ValidationError], prefix: str = "") -> list[str]:
    return format_problems(problems(errors), prefix)


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
    return problems(v2_action_validator().iter_errors(action))


def v2_envelope_problems(body: Any) -> list[tuple[str, str]]:
    """Errors in a v2 batch body outside its actions (the actions are not looked at)."""
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        return problems(v2_batch_validator().iter_errors({**body, "batch": []}))
    return problems(v2_batch_validator().iter_errors(body))


def validate_v2_batch_body(body: Any) -> list[str]:
    """Errors in a ``POST /api/v2/batch`` body (empty list = valid)."""
    # Same verdict as validating the whole body in one go, but per action so that the fast
    # path for person identifies applies.
    errors = format_problems(v2_envelope_problems(body))
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        for index, action in enumerate(body["batch"]):
            errors.extend(validate_v2_batch_action(action, index))
    return errors


def validate_segment_body(operation: str, body: Any) -> list[str]:
    """Errors in an ``add_customers`` / ``remove_customers`` body (empty list = valid)."""
    return _messages(segment_validator(operation).iter_errors(body))


def segment_id_type_errors(id_type: str | None) -> list[str]:
    """Errors in the ``id_type`` query parameter (None: left out, which means ``id``)."""
    if id_type is None:
        return []
    allowed = _id_type_schema()["enum"]
    if id_type not in allowed:
        return [f"id_type: {id_type!r} is not one of {', '.join(allowed)}"]
    return []
