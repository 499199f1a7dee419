"""`manage.py verify_credentials` and the service behind the admin's "Test credentials", against the stand-in."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import Connection
from connections.services.connection.credentials import verify_credentials
from tests.conftest import STANDIN_WORKSPACES

pytestmark = pytest.mark.django_db


def verify(*args):
    out = StringIO()
    call_command("verify_credentials", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_valid_credentials_are_reported_with_the_detected_region(standin, workspace_connection):
    connection = workspace_connection("site-eu", name="Europe")

    check = verify_credentials(connection)

    assert check.valid and not check.rejected and not check.region_mismatch
    assert (check.region, check.configured_region) == ("eu", "eu")
    assert "accepted" in check.message and "EU region" in check.message
    assert [r.path for r in standin.requests("site-eu")] == ["/api/v1/accounts/region"]


def test_rejected_credentials_are_reported_and_the_exit_code_is_non_zero(standin, workspace_connection):
    good = workspace_connection("site-us", name="Good")
    bad = workspace_connection("site-us", name="Bad")
    bad.api_key = "sk-wrong-but-secret"
    bad.save()
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 connections failed the check") as exc:
        call_command("verify_credentials", stdout=out)

    text = out.getvalue()
    assert exc.value.returncode == 1
    assert f"VALID    Good (id {good.pk}, Site ID site-us, US)" in text
    rejected = "Customer.io rejected the Site ID / API key (HTTP 401)"
    assert f"REJECTED Bad (id {bad.pk}, Site ID site-us, US): {rejected}" in text
    assert "2 checked: 1 valid (0 in another region), 1 rejected." in text
    assert "sk-wrong-but-secret" not in text and STANDIN_WORKSPACES["site-us"][0] not in text
    assert verify_credentials(bad).rejected


def test_a_workspace_in_the_other_region_is_a_warning(standin, workspace_connection):
    connection = workspace_connection("site-eu", name="Misplaced")
    Connection.objects.filter(pk=connection.pk).update(region="us")
    connection.refresh_from_db()

    out = verify("--connection", "Misplaced")

    check = verify_credentials(connection)
    assert check.valid and check.region_mismatch and (check.region, check.configured_region) == ("eu", "us")
    assert "WARNING  Misplaced" in out and "change its region to EU" in out
    assert "1 valid (1 in another region), 0 rejected" in out


def test_an_unreachable_customer_io_is_an_error_not_a_rejection(workspace_connection, settings):
    settings.CUSTOMERIO_US_URL = "http://127.0.0.1:9"  # the discard port: connection refused
    connection = workspace_connection("site-us", name="Offline")

    with pytest.raises(CommandError):
        verify("--connection", str(connection.pk))

    check = verify_credentials(connection)
    assert not check.valid and not check.rejected and check.message.startswith("Could not check the credentials")


def test_only_the_named_connection_is_checked(standin, workspace_connection):
    workspace_connection("site-us", name="One")
    workspace_connection("site-eu", name="Two")

    out = verify("--connection", "Two")

    assert "Two" in out and "One" not in out and "1 checked" in out
    assert standin.requests("site-us") == []


def test_an_unknown_connection_is_a_one_line_error(db):
    with pytest.raises(CommandError) as exc:
        verify("--connection", "nope")
    assert str(exc.value) == "No connection named or numbered 'nope'."


def test_no_connections_is_said_plainly(db):
    assert verify() == "No connections to check.\n"
