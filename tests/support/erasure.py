"""A person forwarded to a connection, the three ways to erase them, and a scan of every table."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote, quote_plus

from django.core.management import call_command
from django.db import connection as db
from django.test import Client

from connections.models import Audience, Connection
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import memberships, subscriptions, tokens
from tests.support.firehose import URL, official

CUSTOMER_ID = "erase-me-4711"
EMAIL = "Grace.Hopper@example.org"
FIRST = "Gracelyn"
LAST = "Hopperfield"
PERSONAL = (CUSTOMER_ID, EMAIL, FIRST, LAST)


def forwarded_person(connection: Connection, audience_id: int = 77, **person: str) -> None:
    """The person joins an audience the connection subscribes to, and is sent to the stand-in."""
    audience = Audience.objects.get_or_create(audience_id=audience_id, defaults={"name": f"Audience {audience_id}"})[0]
    subscriptions.subscribe(audience, connection)
    fields = {"customer_id": CUSTOMER_ID, "email": EMAIL, "first_name": FIRST, "last_name": LAST, **person}
    memberships.apply_changes(
        [memberships.ProfileChange(profile=memberships.ProfileInput(**fields), memberships={audience_id: True})]
    )
    report = forwarding.forward_pending(connection.pk)
    assert report.succeeded == 1, report


def dsr_message(customer_id: str | None = CUSTOMER_ID, email: str | None = EMAIL, **fields: Any) -> dict[str, Any]:
    """mParticle's official DSR sample, naming this person (and keeping its device id, which is ignored)."""
    message = official("DsrProcessingRequest")
    message["id"] = str(uuid.uuid4())
    message["subject_request_id"] = str(uuid.uuid4())
    identities = message["subject_identities"]
    identities.pop("email")
    if customer_id is not None:
        identities["controller_customer_id"] = {"encoding": "raw", "value": customer_id}
    if email is not None:
        identities["email"] = {"encoding": "raw", "value": email}
    message.update(fields)
    return message


def post_dsr(message: dict[str, Any] | bytes, token: str | None = None) -> Any:
    token = token or tokens.create_token(f"mParticle {uuid.uuid4().hex[:6]}")[1]
    body = message if isinstance(message, bytes) else json.dumps(message)
    return Client().post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")


def erase_by_command(customer_id: str = CUSTOMER_ID) -> str:
    from io import StringIO

    out = StringIO()
    call_command("erase_person", customer_id=customer_id, stdout=out)
    return out.getvalue()


def erase_in_admin(client: Client, profile_ids: list[int]) -> Any:
    return client.post(
        "/admin/connections/profile/",
        {"action": "erase_people", "_selected_action": [str(p) for p in profile_ids], "post": "yes"},
    )


def encoded_forms(value: str) -> set[str]:
    """The value as a text may hold it: as it is, percent-encoded (a URL path; `+` for spaces), JSON-escaped."""
    return {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}


def tables_holding(*values: str) -> dict[str, list[str]]:
    """Every table (and column) of the database whose text holds one of the values, in any encoding
    (`encoded_forms`) and any case."""
    found: dict[str, list[str]] = {}
    needles = sorted({form.lower() for v in values for form in encoded_forms(v)})
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            columns = [c.name for c in db.introspection.get_table_description(cursor, table)]
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")  # noqa: S608 - names from introspection
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    text = (value.decode(errors="replace") if isinstance(value, bytes) else str(value)).lower()
                    for needle in needles:
                        if needle in text:
                            found.setdefault(table, []).append(f"{column} holds {needle!r}")
    return found
