"""`manage.py erase_person` and the admin's "Erase selected people": confirmation, dry run, repeats, roles."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connections.models import ErasureCall, ErasureRecord, Profile
from tests.support.erasure import CUSTOMER_ID, EMAIL, erase_by_command, erase_in_admin, forwarded_person
from tests.support.factories import ConnectionFactory
from tests.support.firehose import row_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(workspace_connection):  # type: ignore[no-untyped-def]
    connection = workspace_connection("site-us", name="Main workspace")
    ConnectionFactory(name="Archive", erasure="none")
    ConnectionFactory(name="By email", erasure="delete", identify_by="email")
    forwarded_person(connection)
    return Profile.objects.get()


def run(*args: str) -> str:
    out = StringIO()
    call_command("erase_person", *args, stdout=out)
    return out.getvalue()


def test_the_dry_run_says_what_would_happen_per_connection_and_changes_nothing(person):
    before = row_counts()

    out = run("--email", EMAIL.lower(), "--dry-run")

    assert "Dry run: would erase 1 profile(s), 1 membership(s), 0 queued forward(s); 1 forwarding-log row(s)" in out
    assert (
        "Main workspace: suppress (delete the person and keep them from being re-added) in Customer.io, "
        "identified by customer ID" in out
    )
    assert "Archive: nothing sent (the connection is set to erase here only" in out
    assert "By email: delete the person in Customer.io, identified by email" in out
    assert "Nothing was changed." in out
    assert CUSTOMER_ID not in out  # the kinds of identifier, never their values
    assert row_counts() == before


def test_the_command_erases_once_and_a_repeat_changes_nothing(person):
    first = erase_by_command()
    before = row_counts()

    again = erase_by_command()

    assert "Erased 1 profile(s)" in first and "Erasure recorded as" in first
    assert "nothing to erase" in again
    assert row_counts() == before
    record = ErasureRecord.objects.get()
    assert (record.source, record.matched_on, record.profiles_erased) == ("command", "customer ID", 1)
    calls = {c.connection_name: (c.action, c.status, c.id_kind) for c in ErasureCall.objects.all()}
    assert calls == {
        "Main workspace": ("suppress", "pending", "id"),
        "Archive": ("none", "skipped", ""),
        "By email": ("delete", "pending", "email"),
    }


def test_the_command_needs_an_identifier():
    with pytest.raises(CommandError, match="give a customer ID or an email to erase"):
        call_command("erase_person")


def test_the_admin_asks_first_listing_what_happens_per_connection(person, client, marketer):
    client.force_login(marketer)

    page = client.post("/admin/connections/profile/", {"action": "erase_people", "_selected_action": [str(person.pk)]})

    assert page.status_code == 200
    html = page.content.decode()
    assert "Erase this person? This cannot be undone." in html
    assert "Main workspace: suppress (delete the person and keep them from being re-added) in Customer.io" in html
    assert "Archive: nothing sent" in html
    assert "By email: delete the person in Customer.io, identified by email" in html
    assert Profile.objects.exists()  # nothing happens before the confirmation


def test_the_admin_erases_on_confirmation_and_a_repeat_finds_nothing(person, client, marketer):
    client.force_login(marketer)

    response = erase_in_admin(client, [person.pk])
    again = erase_in_admin(client, [person.pk])

    assert response.status_code == again.status_code == 302
    assert not Profile.objects.exists()
    record = ErasureRecord.objects.get()
    assert (record.source, record.requested_by) == ("admin", "marketer")
    messages = [str(m) for m in client.get("/admin/connections/profile/").context["messages"]]
    assert any("Erased 1 person" in m for m in messages)


def test_a_log_viewer_cannot_erase(person, client, log_viewer):
    client.force_login(log_viewer)

    response = erase_in_admin(client, [person.pk])

    assert response.status_code == 403
    assert Profile.objects.exists()


def test_the_erasure_record_is_read_only_and_names_nobody(person, client, marketer):
    erase_by_command()
    record = ErasureRecord.objects.get()
    client.force_login(marketer)

    listing = client.get("/admin/connections/erasurerecord/")
    page = client.get(f"/admin/connections/erasurerecord/{record.pk}/change/")

    assert listing.status_code == page.status_code == 200
    html = page.content.decode()
    assert record.request_id in html and "Main workspace" in html and "Archive" in html
    assert CUSTOMER_ID not in html and EMAIL.lower() not in html.lower()
    assert 'name="_save"' not in html  # no save button: read-only
    assert client.post(f"/admin/connections/erasurerecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/connections/erasurerecord/add/").status_code == 403
