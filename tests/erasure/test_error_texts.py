"""Error texts never hold a person's identifier (issue 26, defect 3).

A `requests` error names the URL, and the URL holds the identifier percent-encoded
(`jane.doe%40example.com`): copied into the log, the connection's last error and its state
history, it outlived the erasure, whose scrub replaced raw values only. Now the client describes
a failure by its kind and route template, and the erasure scrubs every encoding besides.
"""

import json
from urllib.parse import quote, quote_plus

import pytest
from django.utils import timezone

from connections.models import Audience, Connection, ConnectionStateChange, Delivery, ErasureCall
from connections.services.erasure import calls as erasure_calls
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import memberships, subscriptions
from tests.support.erasure import (
    CUSTOMER_ID,
    LAST,
    encoded_forms,
    erase_by_command,
    forwarded_person,
    tables_holding,
)
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db

JANE = "jane.doe@example.com"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused


def holding(texts: list[str], *values: str) -> list[str]:
    """The texts that hold one of the values in any encoding, in any case."""
    forms = {form.lower() for value in values for form in encoded_forms(value)}
    return [text for text in texts if any(form in text.lower() for form in forms)]


def error_texts(connection: Connection) -> list[str]:
    """Every error text an operator reads: the log, the connection's last error, its state history, the calls."""
    connection.refresh_from_db()
    return [
        *Delivery.objects.values_list("error", flat=True),
        connection.last_error,
        *ConnectionStateChange.objects.values_list("reason", flat=True),
        *ErasureCall.objects.values_list("error", flat=True),
    ]


def reactivate(connection: Connection) -> None:
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.ACTIVE, next_probe_at=None)


def test_an_unreachable_customerio_leaves_no_identifier_in_any_error_text_nor_anything_after_the_erasure(
    workspace_connection, standin, settings
):
    settings.CUSTOMERIO_US_URL = UNREACHABLE
    settings.BREAKER_FAILURES = 1  # the first failure opens the breaker: its reason quotes the error
    settings.BREAKER_MIN_SECONDS = 0
    connection = workspace_connection("site-us", transport="v1")
    audience = Audience.objects.create(audience_id=77, name="Audience 77")
    subscriptions.subscribe(audience, connection)
    change = memberships.ProfileChange(
        profile=memberships.ProfileInput(customer_id=JANE, email=JANE), memberships={77: True}
    )
    memberships.apply_changes([change])

    forwarding.forward_pending(connection.pk)

    delivery = Delivery.objects.get()
    connection.refresh_from_db()
    assert (delivery.status, delivery.customer_id, connection.state) == ("retrying", JANE, "backing_off")
    assert ConnectionStateChange.objects.filter(to_state="backing_off").exists()
    assert holding(error_texts(connection), JANE) == []
    assert "PUT /api/v1/customers/{identifier}" in delivery.error
    assert "connection refused" in delivery.error.lower()

    # Erased while Customer.io is still unreachable: the call fails for now, and says so without the person.
    reactivate(connection)
    erase_by_command(JANE)
    erasure_calls.send_due(connection.pk)
    call = ErasureCall.objects.get()
    assert (call.status, call.identifier) == ("retrying", JANE)
    assert holding(error_texts(connection), JANE) == []
    assert "POST /api/v1/customers/{identifier}/suppress" in call.error

    # Customer.io is back: the call is done and nothing anywhere holds the person, in any encoding.
    settings.CUSTOMERIO_US_URL = standin.url
    reactivate(connection)
    ErasureCall.objects.update(due_at=timezone.now())
    erasure_calls.send_due(connection.pk)
    assert ErasureCall.objects.get().status == "succeeded"
    assert tables_holding(JANE) == {}
    purge_broker()  # the breaker's probe tasks


def test_the_erasure_scrubs_every_encoding_from_the_log_the_last_error_and_the_state_history(
    workspace_connection,
):
    """Texts written before this fix (or echoed by Customer.io) are scrubbed too: the second line of defence."""
    first = "Zoë Ann"
    connection = workspace_connection("site-us")
    forwarded_person(connection, email=JANE, first_name=first)
    sent = Delivery.objects.get()
    Delivery.objects.filter(pk=sent.pk).update(
        error=f"connection failed: /api/v1/customers/{quote(JANE, safe='')}",
        response=json.dumps({"errors": [{"message": f"bad name {first}"}]}),  # "Zo\u00eb Ann"
    )
    last_error = f"GET /x?email={quote_plus(JANE)}&n={quote_plus(first)}"
    Connection.objects.filter(pk=connection.pk).update(last_error=last_error)
    ConnectionStateChange.objects.create(
        connection=connection, from_state="active", to_state="backing_off", reason=f"the last: {quote(CUSTOMER_ID)}",
        at=timezone.now(),
    )
    assert holding([*Delivery.objects.values_list("response", flat=True)], first)  # JSON-escaped, found

    erase_by_command()
    erasure_calls.send_due(connection.pk)

    connection.refresh_from_db()
    assert connection.last_error == "GET /x?email=[erased]&n=[erased]"
    assert ConnectionStateChange.objects.get().reason == "the last: [erased]"
    assert Delivery.objects.get(pk=sent.pk).error == "connection failed: /api/v1/customers/[erased]"
    assert tables_holding(CUSTOMER_ID, JANE, first, LAST) == {}
