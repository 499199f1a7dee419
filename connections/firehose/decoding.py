"""A Firehose request body turned into a JSON object, safely, whatever a client sends.

Pure Python (no Django): the nesting pre-scan keeps `json.loads` (which recurses) away from
hostile depths, and every problem is a `MessageError` that says what is wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from connections.firehose.fields import MessageError, json_type

MAX_DEPTH = 64

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_problem(body: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a JSON document cannot be parsed safely (nested too deeply, brackets that do not match), or None.

    No parsing and no recursion, so it is safe on hostile input before `json.loads` (which
    recurses), and only C-speed bytes methods, so it is cheap on any body. Strings are removed
    first (a bracket inside a string nests nothing), leaving the brackets alone; each pass then
    removes every innermost `[]` and `{}` pair. A valid document of depth d is gone after d
    passes; what survives `max_depth` passes is deeper than that, and what a pass cannot shrink
    has brackets that do not match.
    """
    # Escaped backslashes, then escaped quotes, leave only the quotes that delimit strings
    # (left to right, as a parser reads them); every other piece between quotes is a string.
    # Most bodies hold no backslash at all: then there is nothing to unescape (two passes saved).
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(None, _NOT_BRACKETS)
    if re.search(rb"[\[{]{%d}" % (max_depth + 1), brackets):  # the common attack, found at once
        return f"the JSON is nested deeper than {max_depth} levels"
    for _ in range(max_depth):
        if not brackets:
            return None
        # Both kinds of pair at once (a marker keeps "{[]}" from losing two levels in one pass).
        reduced = brackets.replace(b"[]", b"-").replace(b"{}", b"-").replace(b"-", b"")
        if len(reduced) == len(brackets):
            return "the body is not valid JSON: its brackets do not match"
        brackets = reduced
    return f"the JSON is nested deeper than {max_depth} levels" if brackets else None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def decode_body(body: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object, or a MessageError saying why it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("", f"the body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise MessageError("", "the body is empty; expected a JSON object")
    # A cheap count first: a document with fewer brackets than the limit cannot nest deeper.
    if body.count(b"[") + body.count(b"{") > max_depth and (problem := nesting_problem(body, max_depth)):
        raise MessageError("", problem)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        raise MessageError("", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # a backstop: nesting_problem has judged the depth already
        raise MessageError("", f"the JSON is nested deeper than {max_depth} levels") from None
    if not isinstance(data, dict):
        raise MessageError("", f"the body must be a JSON object, not {json_type(data)}")
    return data
