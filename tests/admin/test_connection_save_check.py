"""Saving a connection checks its credentials with Customer.io (the local stand-in, SPEC §6): a rejected
key shows as rejected and never as Active, a check that could not be made as "not verified", and a
good save resumes a connection the old key had faulted."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionStateChange, Forward
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url, changeform_data, make_forward
from tests.support.factories import ConnectionFactory, ProfileFactory
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db

US_KEY, _ = STANDIN_WORKSPACES["site-us"]
WRONG_KEY = "sk-wrong-9f8e7d6c5b"


def messages_of(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def add(client, api_key: str):  # type: ignore[no-untyped-def]
    data = changeform_data(client.get(admin_url(Connection, "add")))
    data.update(name="New workspace", site_id="site-us", api_key=api_key, region="us", _continue="1")
    return client.post(admin_url(Connection, "add"), data, follow=True)


def save(client, connection: Connection, **changes):  # type: ignore[no-untyped-def]
    url = admin_url(Connection, "change", connection.pk)
    data = changeform_data(client.get(url))
    data.update(changes, _continue="1")
    return client.post(url, data, follow=True)


def state_in_list(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    html = client.get(admin_url(Connection, "changelist")).content.decode()
    rows = re.findall(r'<a href="[^"]+/change/">([^<]+)</a>.*?class="cio-badge ([\w-]+)"', html, flags=re.S)
    return dict(rows)


def test_a_new_connection_with_a_rejected_key_is_shown_rejected_never_active(
    client, marketer, standin
):
    client.force_login(marketer)

    response = add(client, WRONG_KEY)

    connection = Connection.objects.get(name="New workspace")
    assert connection.state == Connection.State.FAULTED
    [_added, (level, message)] = messages_of(response)
    assert level == "error"
    assert message.startswith("New workspace: Customer.io rejected the Site ID / API key (HTTP 401)")
    assert "Rejected: nothing is sent to this workspace" in message
    html = response.content.decode()
    health = html[html.index('id="cio-health-title"') :]
    assert re.search(r"<dt>Credentials</dt>\s*<dd><span class=\"cio-bad\">Rejected by Customer.io</span>", health)
    assert "cio-badge cio-active" not in health
    assert state_in_list(client) == {"New workspace": "cio-faulted"}
    assert WRONG_KEY not in html and WRONG_KEY[-5:] not in html


def test_a_new_connection_with_a_good_key_is_active_and_verified(
    client, marketer, standin
):
    client.force_login(marketer)

    response = add(client, US_KEY)

    connection = Connection.objects.get(name="New workspace")
    assert connection.state == Connection.State.ACTIVE and connection.credential_status == "accepted"
    assert ("success", "New workspace: Customer.io accepted the credentials; the workspace is in the US region.") in (
        messages_of(response)
    )
    assert state_in_list(client) == {"New workspace": "cio-active"}


def test_a_check_that_cannot_be_made_shows_not_verified_and_keeps_sending(
    client, marketer, standin
):
    standin.start_outage("503", 30)
    client.force_login(marketer)

    response = add(client, US_KEY)

    connection = Connection.objects.get(name="New workspace")
    assert connection.state == Connection.State.ACTIVE, "an outage is not a reason to hold its changes"
    assert connection.credential_status == "not_verified"
    [_added, (level, message)] = messages_of(response)
    assert level == "warning"
    assert message.startswith("New workspace: Could not check the credentials: Customer.io server error (HTTP 503)")
    assert "Not verified: changes are sent as usual" in message
    assert state_in_list(client) == {"New workspace": "cio-unverified"}
    standin.end_outage()


def test_changed_credentials_that_cannot_be_checked_are_no_longer_verified(
    client, marketer, standin, workspace_connection
):
    connection = workspace_connection("site-us", credentials_verified_at=timezone.now())
    standin.start_outage("503", 30)
    client.force_login(marketer)

    save(client, connection, rate_limit=50)
    connection.refresh_from_db()
    assert connection.credential_status == "accepted", "nothing about the credentials changed"

    save(client, connection, api_key="sk-another-key-1234")
    connection.refresh_from_db()
    assert connection.credential_status == "not_verified"
    standin.end_outage()


def test_one_good_save_resumes_a_connection_faulted_by_a_wrong_key(
    client, marketer, standin
):
    connection = ConnectionFactory(name="Fixed workspace", site_id="site-us", api_key=WRONG_KEY)
    make_forward(connection, ProfileFactory())
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.FAULTED,
        last_error="Customer.io rejected the Site ID / API key (HTTP 401): Unauthorized request",
        last_error_at=timezone.now() - timedelta(minutes=10),
    )
    Forward.objects.update(due_at=timezone.now() + timedelta(minutes=5))
    purge_broker()
    client.force_login(marketer)

    response = save(client, connection, api_key=US_KEY)

    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE and connection.credential_status == "accepted"
    assert Forward.objects.get().due_at <= timezone.now(), "what waited is sent at once"
    [_changed, (level, message)] = messages_of(response)
    assert level == "success"
    assert message.endswith("The connection was faulted: it is resumed and its waiting changes are being sent.")
    change = ConnectionStateChange.objects.get(connection=connection)
    assert (change.from_state, change.to_state, change.reason) == (
        "faulted",
        "active",
        "Customer.io accepted the credentials",
    )
    html = response.content.decode()
    health = html[html.index('id="cio-health-title"') :]
    assert '<span class="cio-badge cio-active">Active</span>' in health
    assert "Last error (past)" in health and "Resolved: Customer.io has answered normally since then" in health
    assert state_in_list(client) == {"Fixed workspace": "cio-active"}
    purge_broker()


def test_test_credentials_with_a_rejected_key_faults_the_connection(client, marketer, standin):
    connection = ConnectionFactory(site_id="site-us", api_key=WRONG_KEY, credentials_verified_at=timezone.now())
    client.force_login(marketer)

    client.post(admin_url(Connection, "test_credentials", connection.pk))

    connection.refresh_from_db()
    assert connection.state == Connection.State.FAULTED
    assert connection.credential_status == "rejected" and connection.credentials_verified_at is None
    assert "HTTP 401" in connection.last_error and WRONG_KEY not in connection.last_error


def test_a_delivery_customerio_takes_verifies_the_credentials(workspace_connection):
    from connections.customerio.client import Outcome, SendResult
    from connections.services.connection import transitions

    connection = workspace_connection("site-us")
    assert connection.credential_status == "not_verified"

    accepted = SendResult(Outcome.SUCCEEDED, 200, "", None, 12, "", 100)
    transitions.note_results(connection, [accepted])

    connection.refresh_from_db()
    assert connection.credential_status == "accepted"


def test_a_new_key_for_a_faulted_connection_that_cannot_be_checked_says_how_to_go_on(client, marketer, standin):
    connection = ConnectionFactory(name="Faulted workspace", site_id="site-us", api_key=WRONG_KEY)
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.FAULTED)
    standin.start_outage("503", 30)
    client.force_login(marketer)

    response = save(client, connection, api_key=US_KEY)

    connection.refresh_from_db()
    assert connection.state == Connection.State.FAULTED, "not resumed on a key nobody could check"
    [_changed, (level, message)] = messages_of(response)
    assert level == "warning"
    assert message.endswith("or “Resume” to send with them now.")
    standin.end_outage()
