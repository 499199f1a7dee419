"""A profile's page: what Customer.io last confirmed and what the next update sends, per connection; audience
names beside SegmentMembership's ids; Erase on the page; Delete saying it deletes here only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cio_standin import Faults
from connections.models import Connection, Delivery, ErasureRecord, Forward, Membership, Profile
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.admin import admin_url, make_delivery, page_text, texts_of
from tests.support.factories import AudienceFactory, ConnectionFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.django_db


def seconds(moment) -> str:  # type: ignore[no-untyped-def]
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def change(customer_id: str, audiences: dict[int, bool], **fields: str) -> None:
    apply_changes([ProfileChange(ProfileInput(customer_id=customer_id, **fields), audiences)])


@pytest.fixture
def us(standin, workspace_connection):
    """Ada, in New Users (123) and not in Churned (456), both forwarded one attribute per audience."""
    connection = workspace_connection("site-us", name="US workspace", one_attribute_per_audience=True)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="New Users"), connection)
    subscriptions.subscribe(AudienceFactory(audience_id=456, name="Churned"), connection)
    change("ada", {123: True, 456: False}, email="ada@example.com", first_name="Ada")
    return connection


def ada() -> Profile:
    return Profile.objects.get(customer_id="ada")


def open_ada(client):  # type: ignore[no-untyped-def]
    return client.get(admin_url(Profile, "change", ada().pk))


def columns(response) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    [delivered] = texts_of(response, "cio-last-delivered")
    [upcoming] = texts_of(response, "cio-next-update")
    return delivered, upcoming


# --- last delivered and next update ------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "superuser"])
def test_a_delivered_person_shows_what_customerio_confirmed_and_nothing_pending(as_role, standin, us, role):
    forwarding.forward_pending(us.pk)  # the worker's own path, to the stand-in
    received = standin.people("site-us")["ada"]
    sent = Delivery.objects.get(profile=ada())

    response = open_ada(as_role(role))
    delivered, upcoming = columns(response)

    assert response.status_code == 200
    assert received == {"email": "ada@example.com", "first_name": "Ada", "In New Users": "true", "In Churned": "false"}
    assert f"Succeeded (HTTP 200) {seconds(sent.finished_at)}" in delivered
    assert "Customer.io confirmed receiving, for the person with ID ada:" in delivered
    for name, value in received.items():
        assert f"{name} {value}" in delivered
    assert f'href="{admin_url(Delivery, "change", sent.pk)}"' in response.content.decode()
    assert "Nothing pending: up to date." in upcoming
    assert "failed" not in delivered + upcoming


def test_a_waiting_change_is_the_next_update_not_what_customerio_has(as_role, us):
    forwarding.forward_pending(us.pk)
    change("ada", {123: False})  # left New Users: queued, not sent yet

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "In New Users true" in delivered
    assert "false" not in delivered.replace("In Churned false", "")
    assert "Pending: a change waiting since" in upcoming
    assert "In New Users false (was true)" in upcoming
    assert "In Churned false" in upcoming and "In Churned false (was" not in upcoming


def test_a_person_whose_last_send_got_a_400_is_shown_failed_not_delivered(as_role, standin, us):
    forwarding.forward_pending(us.pk)
    change("ada", {123: False})
    standin.set_faults(Faults(share=1.0, statuses=[400]))
    forwarding.forward_pending(us.pk)
    failed = Delivery.objects.get(status=Delivery.Status.FAILED)
    assert failed.http_status == 400 and failed.error and not Forward.objects.exists()
    assert standin.people("site-us")["ada"]["In New Users"] == "true", "Customer.io still has the old state"

    response = open_ada(as_role("marketer"))
    delivered, upcoming = columns(response)

    assert "In New Users true" in delivered, "the state Customer.io confirmed, not the one it refused"
    assert "In New Users false" not in delivered
    assert f"The latest attempt failed {seconds(failed.finished_at)} (HTTP 400): {failed.error[:60]}" in delivered
    assert "Customer.io did not receive that update: what it confirmed last is above." in delivered
    assert f'href="{admin_url(Delivery, "change", failed.pk)}"' in response.content.decode()
    assert "Nothing pending, but the latest attempt did not reach Customer.io" in upcoming
    assert "In New Users false (was true)" in upcoming


def test_a_first_send_that_got_a_400_claims_nothing_was_delivered(as_role, standin, us):
    standin.set_faults(Faults(share=1.0, statuses=[400]))
    forwarding.forward_pending(us.pk)

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "Nothing yet: Customer.io has not confirmed receiving any update for this person" in delivered
    assert "The latest attempt failed" in delivered and "(HTTP 400)" in delivered
    assert "Customer.io did not receive that update." in delivered
    assert "In New Users" not in delivered
    assert "Nothing pending, but the latest attempt did not reach Customer.io" in upcoming


def test_a_send_failing_for_now_is_pending_with_its_retry_time(as_role, standin, us):
    standin.set_faults(Faults(share=1.0, statuses=[500]))
    forwarding.forward_pending(us.pk)
    waiting = Forward.objects.order_by("due_at").first()

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "The latest attempt failed for now and will be retried" in delivered and "(HTTP 500)" in delivered
    assert f"Pending: failed 1 time so far; retried at {seconds(waiting.due_at)}." in upcoming


def test_a_person_never_sent_says_so(as_role, us):
    Forward.objects.all().delete()  # as if the change was lost before this version: nothing waits, nothing sent

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "Nothing yet" in delivered
    assert "Nothing pending, but nothing was delivered either: a resync of the connection sends this person" in upcoming


def test_a_person_without_an_identifier_says_why_it_is_not_sent(as_role, us):
    nobody = ProfileFactory(customer_id="", mpid="m-1")
    Membership.objects.create(profile=nobody, audience=us.subscriptions.first().audience, changed_at=timezone.now())

    response = as_role("marketer").get(admin_url(Profile, "change", nobody.pk))
    _delivered, upcoming = columns(response)

    assert "Not sent: profile has no customer_id" in upcoming
    assert "Nothing was sent for this person yet." in page_text(response)


def test_a_connection_no_longer_forwarded_keeps_its_last_delivery(as_role, us):
    forwarding.forward_pending(us.pk)
    subscriptions.set_status(list(us.subscriptions.all()), "inactive")

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "In New Users true" in delivered
    assert "Nothing pending: this person is no longer forwarded here" in upcoming
    assert "Customer.io keeps what it last received." in upcoming


def test_a_profile_in_no_forwarded_audience_says_so(as_role):
    page = page_text(as_role("marketer").get(admin_url(Profile, "change", ProfileFactory().pk)))

    assert "Not forwarded to any Customer.io workspace" in page


def test_log_viewers_do_not_open_profiles(as_role, us):
    assert as_role("log_viewer").get(admin_url(Profile, "change", ada().pk)).status_code == 403


def test_the_page_runs_a_bounded_number_of_queries(as_role, us, workspace_connection):
    """The log, the outbox and the audiences cost the same few queries however long the history; each
    connection the person is forwarded to costs the worker's plan (a handful of queries)."""
    client = as_role("marketer")
    forwarding.forward_pending(us.pk)
    make_delivery(us, ada(), attributes={"SegmentMembership": "'123'"})
    change("ada", {123: False})  # a change waiting

    def queries() -> int:
        with CaptureQueriesContext(db) as captured:
            assert open_ada(client).status_code == 200
        return len(captured)

    base = queries()
    for n in range(30):
        make_delivery(us, ada(), status="failed" if n % 3 else "succeeded", attributes={"SegmentMembership": "'123'"})
    for n in range(10):
        AudienceFactory(audience_id=1000 + n)
        subscriptions.subscribe(AudienceFactory(audience_id=2000 + n), us)
    change("ada", {456: True})
    assert Forward.objects.count() == 2
    assert queries() == base

    eu = workspace_connection("site-eu", name="EU workspace")
    subscriptions.subscribe(AudienceFactory(audience_id=789, name="Newsletter"), eu)
    change("ada", {789: True})
    with_two = queries()
    assert base < with_two <= base + 8, (base, with_two)


# --- audience names beside SegmentMembership ---------------------------------------------------


def test_segment_membership_ids_have_their_audience_names(as_role, standin, workspace_connection):
    connection = workspace_connection("site-us", name="US workspace", one_attribute_per_audience=False)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="Newsletter"), connection)
    subscriptions.subscribe(AudienceFactory(audience_id=456, name="VIP"), connection)
    change("ada", {123: True, 456: True})
    forwarding.forward_pending(connection.pk)
    assert standin.people("site-us")["ada"]["SegmentMembership"] == "'123','456'"
    change("ada", {456: False})

    delivered, upcoming = columns(open_ada(as_role("marketer")))

    assert "SegmentMembership '123','456' 123 = Newsletter, 456 = VIP" in delivered
    assert "SegmentMembership '123' (was '123','456') 123 = Newsletter" in upcoming


def test_an_id_of_a_deleted_audience_says_so(as_role, us):
    make_delivery(us, ada(), attributes={"SegmentMembership": "'123','999'"})

    delivered, _upcoming = columns(open_ada(as_role("marketer")))

    assert "123 = New Users, 999 = no such audience here" in delivered


# --- Erase on the page -------------------------------------------------------------------------


def test_erase_on_the_page_confirms_then_erases_this_person(as_role, us):
    forwarding.forward_pending(us.pk)
    client = as_role("marketer")
    erase_url = reverse("admin:connections_profile_erase", args=[ada().pk])

    page = open_ada(client).content.decode()
    assert f'<a href="{erase_url}" class="deletelink cio-erase"' in page

    confirmation = client.get(erase_url)
    assert confirmation.status_code == 200
    assert "Erase this person? This cannot be undone." in page_text(confirmation)
    assert "US workspace: suppress" in page_text(confirmation)
    assert Profile.objects.filter(customer_id="ada").exists(), "asking changes nothing"

    response = client.post(erase_url, {"post": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == admin_url(Profile, "changelist")
    assert "Erased 1 person." in page_text(response)
    assert not Profile.objects.filter(customer_id="ada").exists()
    record = ErasureRecord.objects.get()
    assert (record.source, record.requested_by) == (ErasureRecord.Source.ADMIN, "marketer")


def test_who_may_not_delete_gets_no_erase(client, us):
    editor = UserFactory(username="editor", is_staff=True)
    editor.user_permissions.set(
        Permission.objects.filter(codename__in=["view_profile", "change_profile", "view_connection"])
    )
    client.force_login(editor)
    erase_url = reverse("admin:connections_profile_erase", args=[ada().pk])

    page = open_ada(client).content.decode()

    assert erase_url not in page and "Delete here only" not in page
    assert client.get(erase_url).status_code == 403
    assert client.post(erase_url, {"post": "yes"}).status_code == 403
    assert Profile.objects.filter(customer_id="ada").exists()


def test_erasing_a_profile_that_is_not_there_is_not_found(as_role, us):
    assert as_role("marketer").get(reverse("admin:connections_profile_erase", args=[987654])).status_code == 404


# --- Delete says what it does ------------------------------------------------------------------


def test_delete_is_labelled_here_only_and_its_confirmation_points_to_erase(as_role, us):
    client = as_role("marketer")
    profile = ada()
    erase_url = reverse("admin:connections_profile_erase", args=[profile.pk])

    page = open_ada(client).content.decode()
    confirmation = client.get(admin_url(Profile, "delete", profile.pk))
    [warning] = texts_of(confirmation, "cio-delete-here-only")

    assert ">Delete here only</a>" in page and ">Delete</a>" not in page
    assert warning == (
        "This deletes the person here only. Customer.io keeps the person and all their attributes: nothing is sent to"
        " it. To remove them from Customer.io as well, use Erase… instead."
    )
    assert f'<a href="{erase_url}">Erase…</a>' in confirmation.content.decode()


def test_deleting_here_sends_nothing_to_customerio(as_role, standin, us):
    forwarding.forward_pending(us.pk)
    change("ada", {123: False})  # a change waiting: deleted with the person, as their memberships are
    client = as_role("marketer")
    requests_before = len(standin.requests())

    confirmation = client.get(admin_url(Profile, "delete", ada().pk))
    response = client.post(admin_url(Profile, "delete", ada().pk), {"post": "yes"})

    assert "Are you sure you want to delete the profile" in page_text(confirmation)
    assert response.status_code == 302
    assert not Profile.objects.exists() and not Forward.objects.exists() and not ErasureRecord.objects.exists()
    assert "ada" in standin.people("site-us") and len(standin.requests()) == requests_before


def test_the_list_delete_action_says_here_only_too(as_role, us):
    client = as_role("marketer")
    changelist = client.get(admin_url(Profile, "changelist"))
    actions = dict(changelist.context["action_form"].fields["action"].choices)

    confirmation = client.post(
        admin_url(Profile, "changelist"), {"action": "delete_selected", "_selected_action": [ada().pk]}
    )

    assert actions["delete_selected"] == "Delete selected profiles here only (not in Customer.io)"
    [warning] = texts_of(confirmation, "cio-delete-here-only")
    assert "Customer.io keeps the person and all their attributes" in warning
    assert "use the “Erase selected people…” action instead." in warning


def test_connections_are_listed_by_name_each_with_its_own_columns(as_role, us, workspace_connection):
    forwarding.forward_pending(us.pk)
    archive = ConnectionFactory(name="Archive workspace")
    make_delivery(archive, ada(), status="failed", http_status=400, error="Bad request: attribute too long")

    response = open_ada(as_role("marketer"))
    sections = texts_of(response, "cio-person-connection")

    assert [s.split(" Last delivered")[0] for s in sections] == ["Archive workspace", "US workspace"]
    assert "Bad request: attribute too long" in sections[0] and "Bad request" not in sections[1]
    assert Connection.objects.count() == 2
