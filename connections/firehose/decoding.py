"""A Firehose request body turned into a JSON object, safely, whatever a client sends.

Pure Python (no Django): the nesting pre-scan keeps `json.loads` (which recurses) away from
hostile depths, and every problem is a `MessageError` that says what is wrong.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from connections.firehose.fields import MessageError, json_type
from connections.json_nesting import MAX_DEPTH, nesting_problem


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
