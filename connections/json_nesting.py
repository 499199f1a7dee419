"""How deeply a JSON document nests, found without parsing it (pure, no Django).

The Firehose endpoint and the import read JSON from outside; `json.loads` recurses, so each
refuses a document nested too deeply before parsing it.
"""

from __future__ import annotations

import re

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
