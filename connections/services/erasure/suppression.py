"""Identifiers suppressed by an erasure: never forwarded to that connection again, until un-suppressed.

Customer.io ignores a suppressed identifier; an erased person who comes back (a new profile with
the same customer ID or email) would only be refused there, or worse, re-created where the
connection is later switched to `delete`. The forwarding path skips them, with the reason in the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connections.models import Connection, SuppressedIdentifier
from connections.services.erasure.rules import EMAIL, ID, identifier_hash

SUPPRESSED_REASON = (
    "suppressed in Customer.io by an erasure: not forwarded again (un-suppress: delete it under "
    "Suppressed identifiers, and unsuppress it in Customer.io)"
)


def suppressed_profiles(connection: Connection, profiles: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """profile id -> why it is not sent, for the profiles whose customer ID or email is suppressed here."""
    if not SuppressedIdentifier.objects.filter(connection=connection).exists():
        return {}  # the usual case: nothing to hash, no list of thousands of hashes to look up
    hashes: dict[str, set[int]] = {}
    for p in profiles:
        if p.get("customer_id"):
            hashes.setdefault(identifier_hash(ID, p["customer_id"]), set()).add(p["id"])
        if p.get("email"):
            hashes.setdefault(identifier_hash(EMAIL, p["email"]), set()).add(p["id"])
    if not hashes:
        return {}
    found = SuppressedIdentifier.objects.filter(connection=connection, identifier_hash__any=list(hashes))
    return {pid: SUPPRESSED_REASON for h in found.values_list("identifier_hash", flat=True) for pid in hashes[h]}
