"""Customer.io erasure calls: retried while failures are transient, failed on 400, held on 401, paused."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cio_standin import Faults
from cio_standin import erasure as standin_erasure
from connections.models import Connection, Delivery, ErasureCall, Forward
from connections.services.erasure import calls as erasure_calls
from connections.services.erasure.suppression import SUPPRESSED_REASON
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import memberships
from tests.support.erasure import CUSTOMER_ID, EMAIL, erase_by_command, forwarded_person

pytestmark = pytest.mark.django_db


@pytest.fixture
def erased(workspace_connection, settings):  # type: ignore[no-untyped-def]
    settings.FORWARD_BACKOFF_BASE = 0.01
    settings.FORWARD_BACKOFF_MAX = 0.01
    connection = workspace_connection("site-us")
    forwarded_person(connection)
    erase_by_command()
    return connection


def test_a_transient_failure_is_retried_until_it_succeeds(erased, standin):
    standin.set_faults(Faults(share=1.0, statuses=(503,), retry_after=None))

    assert erasure_calls.send_due(erased.pk) == 1
    call = ErasureCall.objects.get()
    assert (call.status, call.identifier, call.attempts, call.http_status) == ("retrying", CUSTOMER_ID, 1, 503)
    assert Delivery.objects.get(action="suppress").status == "retrying"

    for _ in range(3):  # however long it lasts, never given up
        ErasureCall.objects.update(due_at=timezone.now())
        erasure_calls.send_due(erased.pk)
    assert ErasureCall.objects.get().status == "retrying"

    standin.clear_faults()
    ErasureCall.objects.update(due_at=timezone.now())
    erasure_calls.send_due(erased.pk)
    call = ErasureCall.objects.get()
    assert (call.status, call.identifier, call.attempts) == ("succeeded", "", 5)
    assert standin_erasure.suppressed(standin.state, "site-us") == [CUSTOMER_ID]
    assert list(Delivery.objects.filter(action="suppress").values_list("status", flat=True).order_by("pk")) == [
        "retrying",
        "retrying",
        "retrying",
        "retrying",
        "succeeded",
    ]


def test_a_call_not_yet_due_is_not_sent(erased):
    ErasureCall.objects.update(due_at=timezone.now() + timedelta(minutes=5))

    assert erasure_calls.send_due(erased.pk) == 0


def test_a_call_customerio_refuses_fails_for_good_and_keeps_no_identifier(erased, standin):
    standin.set_faults(Faults(share=1.0, statuses=(400,)))

    assert erasure_calls.send_due(erased.pk) == 1

    call = ErasureCall.objects.get()
    assert (call.status, call.identifier, call.http_status) == ("failed", "", 400)
    assert "HTTP 400" in call.error
    assert Delivery.objects.get(action="suppress").status == "failed"
    assert erasure_calls.send_due(erased.pk) == 0  # not retried


@pytest.mark.parametrize("identifier", ["x" * 151, ".", ".."])
def test_an_identifier_customerio_cannot_address_is_failed_without_a_request(identifier, workspace_connection, standin):
    connection = workspace_connection("site-us")
    memberships.apply_changes([memberships.ProfileChange(profile=memberships.ProfileInput(customer_id=identifier))])
    erase_by_command(identifier)

    erasure_calls.send_due(connection.pk)

    call = ErasureCall.objects.get()
    assert (call.status, call.identifier, call.http_status) == ("failed", "", None)
    assert "not sent" in call.error
    assert not standin.requests("site-us")


def test_rejected_credentials_fault_the_connection_and_the_call_waits(erased, standin):
    Connection.objects.filter(pk=erased.pk).update(api_key="a-key-customerio-refuses")

    assert erasure_calls.send_due(erased.pk) == 1

    erased.refresh_from_db()
    assert erased.state == "faulted"
    call = ErasureCall.objects.get()
    assert (call.status, call.identifier, call.http_status, call.claim_token) == ("pending", CUSTOMER_ID, 401, "")
    assert erasure_calls.send_due(erased.pk) == 0  # nothing is sent while faulted


def test_nothing_is_sent_while_customerio_asked_to_pause(erased, standin):
    Connection.objects.filter(pk=erased.pk).update(paused_until=timezone.now() + timedelta(minutes=1))

    assert erasure_calls.send_due(erased.pk) == 0
    assert not standin.requests("site-us")[1:]  # only the identify sent before the erasure


def test_an_erased_person_who_comes_back_is_a_new_profile_not_forwarded_to_a_suppress_connection(erased, standin):
    erasure_calls.send_due(erased.pk)
    change = memberships.ProfileChange(
        profile=memberships.ProfileInput(customer_id=CUSTOMER_ID, email=EMAIL), memberships={77: True}
    )

    memberships.apply_changes([change])
    report = forwarding.forward_pending(erased.pk)

    assert report.skipped == 1 and report.succeeded == 0
    skipped = Delivery.objects.filter(status="skipped").get()
    assert skipped.error == SUPPRESSED_REASON
    assert CUSTOMER_ID not in standin.people("site-us")


def test_un_suppressing_lets_the_person_be_forwarded_again(erased, standin, client, marketer):
    erasure_calls.send_due(erased.pk)
    client.force_login(marketer)
    changelist = client.get("/admin/connections/suppressedidentifier/", {"q": CUSTOMER_ID})
    [suppressed] = changelist.context["cl"].result_list
    response = client.post(f"/admin/connections/suppressedidentifier/{suppressed.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    standin_unsuppress(standin)
    change = memberships.ProfileChange(
        profile=memberships.ProfileInput(customer_id=CUSTOMER_ID), memberships={77: True}
    )

    memberships.apply_changes([change])
    forwarding.forward_pending(erased.pk)

    assert standin.people("site-us")[CUSTOMER_ID] == {"SegmentMembership": "'77'"}


def standin_unsuppress(standin) -> None:  # type: ignore[no-untyped-def]
    """What an operator does in Customer.io (README: Personal data): unsuppress the identifier."""
    from connections.customerio.client import CustomerIOClient
    from tests.conftest import STANDIN_WORKSPACES

    client = CustomerIOClient("site-us", STANDIN_WORKSPACES["site-us"][0], "us", base_url=standin.url)
    assert client._send("POST", f"/api/v1/customers/{CUSTOMER_ID}/unsuppress", None)[0].http_status == 200


def test_a_person_returning_to_a_delete_connection_is_forwarded_as_new(workspace_connection, standin):
    connection = workspace_connection("site-us", erasure="delete")
    forwarded_person(connection)
    erase_by_command()
    erasure_calls.send_due(connection.pk)
    assert CUSTOMER_ID not in standin.people("site-us")

    forwarded_person(connection, first_name="", last_name="", email="")

    assert standin.people("site-us")[CUSTOMER_ID] == {"SegmentMembership": "'77'"}


def test_queued_forwards_of_the_person_are_dropped(workspace_connection):
    connection = workspace_connection("site-us")
    forwarded_person(connection)
    memberships.update_profile_identity(memberships.Profile.objects.get(), first_name="Changed")  # queues a forward
    assert Forward.objects.exists()

    erase_by_command()

    assert not Forward.objects.exists()


def test_a_connection_identifying_people_by_email_deletes_them_by_email(workspace_connection, standin):
    connection = workspace_connection("site-us", erasure="delete", identify_by="email")
    forwarded_person(connection)
    assert EMAIL in str(standin.people("site-us"))
    erase_by_command()

    erasure_calls.send_due(connection.pk)

    [request] = [r for r in standin.requests("site-us") if r.method == "DELETE"]
    assert request.path == "/api/v1/customers/Grace.Hopper%40example.org"
    assert EMAIL not in str(standin.people("site-us"))
    assert ErasureCall.objects.get().id_kind == "email"


def test_the_persons_values_are_scrubbed_from_errors_and_from_other_rows_of_the_same_request(workspace_connection):
    connection = workspace_connection("site-us")
    forwarded_person(connection)
    sent = Delivery.objects.get()
    other = Delivery.objects.create(
        connection=connection,
        customer_id="someone-else",
        request_id=sent.request_id,
        status="failed",
        response=f'{{"errors": [{{"message": "{EMAIL} is invalid"}}]}}',
    )
    skipped = Delivery.objects.create(
        connection=connection, profile=sent.profile, customer_id=CUSTOMER_ID, status="skipped", error=f"{CUSTOMER_ID}!"
    )

    erase_by_command()

    other.refresh_from_db()
    skipped.refresh_from_db()
    assert other.customer_id == "someone-else" and other.response == '{"errors": [{"message": "[erased] is invalid"}]}'
    assert (skipped.customer_id, skipped.error, skipped.profile_id) == ("", "[erased]!", None)
