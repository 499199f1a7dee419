"""`key=value` log lines (logfmt) that a log pipeline can parse whatever the values hold."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_VALUE_CHARS = 500
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+\-]+$")


def logfmt_value(value: Any) -> str:
    """A value as logfmt: bare when it is a plain token, else a JSON string (quotes, newlines escaped)."""
    if value is None:
        return "-"
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "…"
    if text and _BARE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def logfmt(event: str, **fields: Any) -> str:
    """`event key=value ...`, in the order given. Callers pass ids and outcomes, never secrets."""
    return " ".join([event, *(f"{key}={logfmt_value(value)}" for key, value in fields.items())])
