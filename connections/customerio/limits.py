"""Customer.io's Track API limits, checked before anything is sent.

A request that breaks a limit is never cut down to fit: the caller records it as failed
with the reason returned here, which names the limit and the offending item.
All sizes are UTF-8 bytes of exactly what the client sends (see `encode_json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from connections.customerio.identifiers import Identifier

MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_CALL = 300
MAX_V2_ACTION_BYTES = 32 * 1024  # each action must be strictly smaller
MAX_V2_BATCH_BYTES = 500 * 1024  # each batch body must be strictly smaller

Transport = Literal["v1", "v2_batch"]
TRANSPORTS: tuple[str, ...] = ("v1", "v2_batch")

_BATCH_ENVELOPE_BYTES = len(b'{"batch":[]}')
_BATCH_SEPARATOR_BYTES = len(b",")
_NAME_PREVIEW_CHARS = 60


def encode_json(obj: Any) -> bytes:
    """The one serialization used both to measure and to send, so the two agree.

    orjson: compact, UTF-8, unescaped non-ASCII, as `json.dumps(separators=(",", ":"),
    ensure_ascii=False)` writes it, at a tenth of the cost (a 1,000-person batch is encoded once to
    measure its actions and once to send). What orjson refuses (a lone surrogate has no UTF-8
    form) goes through the standard library, which says why in a UnicodeEncodeError.
    """
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# Attribute values are strings, except Customer.io's `_update` flag (a JSON boolean).
AttributeValue = str | bool


def as_identifier(identifier: Identifier | str) -> Identifier:
    """A plain string is a customer ID, as everywhere before people could be identified by email."""
    return identifier if isinstance(identifier, Identifier) else Identifier("id", identifier)


def v2_action(identifier: Identifier | str, attributes: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """One v2 `person` / `identify` action: `identifiers` is {"id": ...} or {"email": ...}."""
    chosen = as_identifier(identifier)
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {chosen.kind: chosen.value},
        "attributes": dict(attributes),
    }


def limit_violation(
    identifier: Identifier | str, attributes: Mapping[str, AttributeValue], transport: str
) -> str | None:
    """None when the identify can be sent, else the first limit it breaks, in words."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")
    chosen = as_identifier(identifier)
    if _plainly_within(chosen, attributes, transport):
        return None
    return (
        _encoding_violation(chosen, attributes)
        or _identifier_violation(chosen)
        or (_v1_path_violation(chosen) if transport == "v1" else None)
        or _attribute_count_violation(attributes)
        or _attribute_violation(attributes)
        or (_v2_action_violation(chosen, attributes) if transport == "v2_batch" else None)
    )


# Any character takes at most 6 bytes in JSON (`\u001f`); quotes, colons and commas add a few per
# attribute. An action whose raw sizes bound its JSON below the limit needs no encoding to know it.
_JSON_BYTES_PER_CHAR = 6
_JSON_BYTES_PER_ATTRIBUTE = 6
_ACTION_ENVELOPE_BYTES = len(b'{"type":"person","action":"identify","identifiers":{"email":""},"attributes":{}}')


def _plainly_within(identifier: Identifier, attributes: Mapping[str, AttributeValue], transport: str) -> bool:
    """True only when the identify breaks no limit; False when the checks below must say (they name it).

    The common person (a short id, a few short values) is answered from one encoding of each
    string, instead of the four the named checks make: a page of a thousand people spent more in
    these checks than in building its body (issue 29).
    """
    if len(attributes) > MAX_ATTRIBUTES_PER_CALL or (transport == "v1" and identifier.value in _DOT_SEGMENTS):
        return False
    try:
        total = len(identifier.value.encode())
        if not 0 < total <= MAX_IDENTIFIER_BYTES:
            return False
        for name, value in attributes.items():
            name_size = len(name.encode())
            value_size = len(value.encode() if isinstance(value, str) else str(value).encode())
            if name_size > MAX_ATTRIBUTE_NAME_BYTES or value_size > MAX_ATTRIBUTE_VALUE_BYTES:
                return False
            total += name_size + value_size + _JSON_BYTES_PER_ATTRIBUTE
    except UnicodeEncodeError:
        return False
    return transport != "v2_batch" or _ACTION_ENVELOPE_BYTES + _JSON_BYTES_PER_CHAR * total < MAX_V2_ACTION_BYTES


def identifier_violation(identifier: Identifier | str) -> str | None:
    """None when Customer.io accepts the identifier (a segment request's ids), else why not."""
    chosen = as_identifier(identifier)
    if not _is_utf8_encodable(chosen.value):
        return f"{_label(chosen)} contains characters that cannot be encoded as UTF-8"
    return _identifier_violation(chosen)


def pack_v2_batches(
    actions: Sequence[Mapping[str, Any]],
    max_bytes: int = MAX_V2_BATCH_BYTES,
    max_actions: int | None = None,
) -> list[list[int]]:
    """Group action indexes, in order, so each `{"batch": [...]}` body is < max_bytes.

    The body size is the envelope plus each action plus one comma between actions, so
    it is summed from each action's own length instead of re-serializing the batch.
    """
    if max_actions is not None and max_actions < 1:
        raise ValueError("max_actions must be at least 1")
    groups: list[list[int]] = []
    current: list[int] = []
    current_bytes = _BATCH_ENVELOPE_BYTES
    for index, action in enumerate(actions):
        action_bytes = len(encode_json(action))
        if _BATCH_ENVELOPE_BYTES + action_bytes >= max_bytes:
            # Packing never drops or splits an action; the caller should have rejected
            # it with limit_violation, so this is a programming error, not a send error.
            raise ValueError(
                f"action {index} is {action_bytes:,} bytes and cannot fit in a batch under {max_bytes:,} bytes"
            )
        grown_bytes = current_bytes + action_bytes + (_BATCH_SEPARATOR_BYTES if current else 0)
        full = grown_bytes >= max_bytes or (max_actions is not None and len(current) >= max_actions)
        if current and full:
            groups.append(current)
            current, grown_bytes = [], _BATCH_ENVELOPE_BYTES + action_bytes
        current.append(index)
        current_bytes = grown_bytes
    if current:
        groups.append(current)
    return groups


def _label(identifier: Identifier) -> str:
    # Named as the profile field it came from, which is what an operator can look up.
    return "customer_id" if identifier.kind == "id" else "email"


def _encoding_violation(identifier: Identifier, attributes: Mapping[str, AttributeValue]) -> str | None:
    # JSON input can carry lone surrogates ("\ud800"), which have no UTF-8 form; say so
    # here instead of letting the size checks or the client crash on them.
    if not _is_utf8_encodable(identifier.value):
        return f"{_label(identifier)} contains characters that cannot be encoded as UTF-8"
    for name, value in attributes.items():
        if not _is_utf8_encodable(name):
            return f"attribute name {_preview(name)} contains characters that cannot be encoded as UTF-8"
        if isinstance(value, str) and not _is_utf8_encodable(value):
            return f"{name} value contains characters that cannot be encoded as UTF-8"
    return None


def _identifier_violation(identifier: Identifier) -> str | None:
    label = _label(identifier)
    if not identifier.value:
        return f"{label} is empty; Customer.io needs an identifier"
    size = _utf8_size(identifier.value)
    if size > MAX_IDENTIFIER_BYTES:
        return f"{label} is {size:,} bytes; Customer.io allows at most {MAX_IDENTIFIER_BYTES:,} bytes per identifier"
    return None


# RFC 3986 dot segments: a client (urllib3 here) and any proxy on the way resolve them, so
# PUT /api/v1/customers/. reaches /api/v1/customers/ and ".." reaches /api/v1/, never that person.
# Percent-encoding cannot help: "%2E" is an unreserved character and means "." again.
_DOT_SEGMENTS = frozenset({".", ".."})


def _v1_path_violation(identifier: Identifier) -> str | None:
    # v1 only: v2 carries the identifier in the JSON body, where "." and ".." are ordinary values.
    if identifier.value in _DOT_SEGMENTS:
        return (
            f"{_label(identifier)} {identifier.value!r} is made only of dots; Customer.io's v1 API cannot address it "
            "(it would be read as a dot segment of the URL path); the v2 batch transport can"
        )
    return None


def _attribute_count_violation(attributes: Mapping[str, AttributeValue]) -> str | None:
    # The `_update` flag is counted too: Customer.io does not say whether it counts, and
    # refusing one profile at exactly 300 attributes is better than a rejected request.
    if len(attributes) > MAX_ATTRIBUTES_PER_CALL:
        return (
            f"{len(attributes):,} attributes; Customer.io allows at most "
            f"{MAX_ATTRIBUTES_PER_CALL:,} attributes per call"
        )
    return None


def _attribute_violation(attributes: Mapping[str, AttributeValue]) -> str | None:
    for name, value in attributes.items():
        name_size = _utf8_size(name)
        if name_size > MAX_ATTRIBUTE_NAME_BYTES:
            return (
                f"attribute name {_preview(name)} is {name_size:,} bytes; Customer.io "
                f"allows at most {MAX_ATTRIBUTE_NAME_BYTES:,} bytes per attribute name"
            )
        value_size = _utf8_size(value if isinstance(value, str) else str(value))
        if value_size > MAX_ATTRIBUTE_VALUE_BYTES:
            return (
                f"{name} value is {value_size:,} bytes; Customer.io allows at most "
                f"{MAX_ATTRIBUTE_VALUE_BYTES:,} bytes per attribute value"
            )
    return None


def _v2_action_violation(identifier: Identifier, attributes: Mapping[str, AttributeValue]) -> str | None:
    size = len(encode_json(v2_action(identifier, attributes)))
    if size >= MAX_V2_ACTION_BYTES:
        return (
            f"v2 identify action is {size:,} bytes; Customer.io requires each batch "
            f"action to be under {MAX_V2_ACTION_BYTES:,} bytes (32 KB)"
        )
    return None


def _utf8_size(text: str) -> int:
    return len(text.encode())


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _preview(name: str) -> str:
    # A name that is too long is also too long to quote whole in a log line.
    if len(name) <= _NAME_PREVIEW_CHARS:
        return repr(name)
    return repr(name[:_NAME_PREVIEW_CHARS]) + "…"
