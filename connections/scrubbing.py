"""Personal values taken out of texts, in every encoding a text may hold them (pure, no database).

The Customer.io client scrubs what Customer.io echoes of a person from its error texts, and an
erasure scrubs what is left in the forwarding log, connection texts and erasure calls.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

MIN_SCRUBBED_CHARS = 3  # shorter values would blank letters everywhere


def encoded_forms(value: str) -> set[str]:
    """Every way a text may hold the value: as it is, percent-encoded as a URL path segment or
    path, as a query or form value (`+` for a space), JSON-escaped (`\\u00eb`, `\\"`); each of
    these in lower case too (an email may come back lower-cased)."""
    forms = set()
    # A lone surrogate has no UTF-8 form: no request carried it, and no text column can hold it.
    for variant in {value, value.lower()} if _storable(value) else ():
        forms |= {variant, json.dumps(variant)[1:-1], json.dumps(variant, ensure_ascii=False)[1:-1]}
        forms |= {quote(variant, safe=""), quote(variant), quote_plus(variant)}
    return {form for form in forms if len(form) >= MIN_SCRUBBED_CHARS}


def scrubbed_forms(values: list[str]) -> list[str]:
    """The encoded forms of the values to replace, the longest first (so a name inside an email goes too)."""
    forms = {form for value in values if len(value) >= MIN_SCRUBBED_CHARS for form in encoded_forms(value)}
    return sorted(forms, key=lambda form: (-len(form), form))


def scrub_text(text: str, values: list[str], replacement: str) -> str:
    """`text` with every personal value replaced, in any of its encodings.

    Only the values that may be in the text are encoded: a v2 batch names a thousand people, and
    its answer is usually `{}` (encoding them all took 40 ms a request, issue 29).
    """
    if len(text) < MIN_SCRUBBED_CHARS:
        return text
    lowered = text.lower()
    for form in scrubbed_forms([value for value in values if _may_hold(lowered, value)]):
        text = text.replace(form, replacement)
    return text


_ASCII_RUN = re.compile(r"[a-z0-9]+")


def _may_hold(lowered_text: str, value: str) -> bool:
    """False only when no form of the value can be in the text.

    Every form keeps the value's ASCII letters and digits as they are (JSON and percent-encoding
    escape other characters only), in its own case or lower case: so each form, lower-cased,
    holds the value's longest run of them, lower-cased. A value without any is always encoded.
    """
    runs = _ASCII_RUN.findall(value.lower())
    return not runs or max(runs, key=len) in lowered_text


def _storable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
