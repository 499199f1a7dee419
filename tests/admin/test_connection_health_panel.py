"""The connection page's health panel after a recovery (no stale "Last error"), its credentials line, and its
buttons coloured by what they do."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.models import Connection
from connections.services.connection import transitions
from tests.support.admin import admin_url
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

ERROR = "Customer.io server error (HTTP 503): Service Unavailable"


def health(client, connection: Connection) -> str:  # type: ignore[no-untyped-def]
    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()
    section = html[html.index('id="cio-health-title"') : html.index("Deliveries per hour")]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section))


def answered(connection: Connection, status: int, error: str = "") -> SendResult:
    outcome = Outcome.SUCCEEDED if status < 300 else Outcome.RETRY
    result = SendResult(outcome, status, "", None, 10, error, 100)
    transitions.note_results(connection, [result])
    return result


def test_an_error_followed_by_a_success_is_shown_as_past(client, marketer):
    connection = ConnectionFactory(name="Recovered")
    answered(connection, 503, ERROR)
    client.force_login(marketer)
    assert "Last error " + ERROR in health(client, connection)
    assert "Resolved" not in health(client, connection)

    Connection.objects.filter(pk=connection.pk).update(last_error_at=timezone.now() - timedelta(minutes=3))
    answered(connection, 200)

    text = health(client, connection)
    assert "Last error (past) " + ERROR in text
    assert "Resolved: Customer.io has answered normally since then (latest just now)." in text


def test_a_backing_off_connection_keeps_its_error_current(client, marketer):
    now = timezone.now()
    connection = ConnectionFactory(
        state=Connection.State.BACKING_OFF,
        last_error=ERROR,
        last_error_at=now,
        last_success_at=now - timedelta(minutes=5),
        credentials_verified_at=now - timedelta(minutes=5),
    )
    client.force_login(marketer)

    text = health(client, connection)

    assert "Last error " + ERROR in text and "Resolved" not in text


def test_the_credentials_line_says_accepted_not_verified_or_rejected(client, marketer):
    accepted = ConnectionFactory(credentials_verified_at=timezone.now() - timedelta(hours=2))
    unverified = ConnectionFactory()
    rejected = ConnectionFactory(state=Connection.State.FAULTED, last_error="rejected", last_error_at=timezone.now())
    client.force_login(marketer)

    assert "Credentials Accepted 2 hours ago" in health(client, accepted)
    assert "State Not verified Credentials Not verified" in health(client, unverified)
    assert "State Faulted Credentials Rejected by Customer.io" in health(client, rejected)


def test_the_buttons_are_coloured_by_what_they_do(client, marketer):
    connection = ConnectionFactory(state=Connection.State.BACKING_OFF)
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    buttons = dict(
        (label, intent)
        for intent, label in re.findall(r'<button type="submit" class="cio-(\w+)"[^>]*>([^<]+)</button>', html)
    )
    assert buttons == {
        "Test credentials": "neutral",
        "Probe now": "neutral",
        "Resume": "neutral",
        "Resync": "warning",
    }
    assert re.search(r'<a href="[^"]+/delete/" class="deletelink">Delete</a>', html)  # the admin's red one
    styles = html[html.index(".object-tools button.cio-warning") :]
    assert "background: #b45309" in styles.split("}")[0]
