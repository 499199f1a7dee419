"""What an erasure tells each Customer.io workspace: pure rules, no database, no HTTP.

The person is identified the way the connection identifies people when it forwards them
(`identify_by`), so the suppress or delete reaches the same Customer.io person the identifies
created. A person the connection could never have forwarded (no identifier of that kind) has
nothing to erase there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SUPPRESS = "suppress"
DELETE = "delete"
NONE = "none"

ID = "id"
EMAIL = "email"

NONE_REASON = "the connection is set to erase here only"


@dataclass(frozen=True)
class PersonIdentifiers:
    customer_id: str
    email: str


@dataclass(frozen=True)
class CallDecision:
    """A call to queue (`kind`, `identifier` set) or why none is (`skip` set); `action` as configured."""

    action: str
    kind: str = ""
    identifier: str = ""
    skip: str = ""


def identifier_for(identify_by: str, person: PersonIdentifiers) -> tuple[str, str] | str:
    """(kind, value) the connection identifies this person by, or why it has none.

    Mirrors the forwarding rules: `customer_id` (the seed), `customer_id_or_email` (the customer
    ID, the email for people without one), `email`.
    """
    customer_id, email = person.customer_id.strip(), person.email.strip()
    if identify_by == "email":
        return (EMAIL, email) if email else "the person has no email, which this connection identifies people by"
    if customer_id:
        return ID, customer_id
    if identify_by == "customer_id_or_email" and email:
        return EMAIL, email
    return "the person has no customer ID, so this connection never sent them to Customer.io"


def decide_call(erasure_mode: str, identify_by: str, person: PersonIdentifiers) -> CallDecision:
    """What to tell one connection's workspace about one erased person."""
    if erasure_mode == NONE:
        return CallDecision(action=NONE, skip=NONE_REASON)
    found = identifier_for(identify_by, person)
    if isinstance(found, str):
        return CallDecision(action=erasure_mode, skip=found)
    kind, identifier = found
    return CallDecision(action=erasure_mode, kind=kind, identifier=identifier)


MAX_IDENTIFIER_BYTES = 150  # Customer.io's identifier limit (reference/README.md)


def unsendable_identifier(identifier: str) -> str | None:
    """Why Customer.io's v1 path cannot carry this identifier, or None.

    Over 150 bytes Customer.io refuses it; made only of dots it would be read as a path segment
    ("." or "..") and address another URL altogether, a delete of the wrong thing.
    """
    if len(identifier.encode()) > MAX_IDENTIFIER_BYTES:
        return f"the identifier is longer than Customer.io's limit of {MAX_IDENTIFIER_BYTES} bytes; not sent"
    if set(identifier) == {"."}:
        return "an identifier made only of dots cannot be addressed in Customer.io's v1 API; not sent"
    return None


def identifier_hash(kind: str, value: str) -> str:
    """The pseudonym a suppressed identifier is remembered by (emails compared in lower case).

    A hash rather than the value, so the suppression list holds no readable personal data; it
    still lets the forwarding path recognise the same identifier when it comes back.
    """
    normalised = value.strip().lower() if kind == EMAIL else value.strip()
    return hashlib.sha256(f"cioaudience-suppressed:{kind}:{normalised}".encode()).hexdigest()


ERASED = "[erased]"
