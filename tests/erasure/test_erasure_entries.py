"""An erasure through each entry (mParticle DSR, admin, command), for each mode and transport (SPEC section 12).

After it: the person is gone from every table the suite can reach, and Customer.io was told
as the connection says (suppressed, deleted, or left alone) over real HTTP to the stand-in.
"""

import pytest
from django.contrib.admin.models import LogEntry
from django.test import override_settings

from cio_standin import erasure as standin_erasure
from connections.models import Delivery, ErasureCall, ErasureRecord, FirehoseMessage, Profile
from connections.services.erasure import calls as erasure_calls
from tests.support.admin import changeform_data
from tests.support.erasure import (
    CUSTOMER_ID,
    EMAIL,
    LAST,
    PERSONAL,
    dsr_message,
    erase_by_command,
    erase_in_admin,
    forwarded_person,
    post_dsr,
    tables_holding,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _applied_in_the_request():
    """A DSR's erasure is read right after its answer: FIREHOSE_APPLY=request, so the answer means
    it is made (the worker's order and timing: tests/firehose/test_apply_in_worker.py, test_parallel_applier.py)."""
    with override_settings(FIREHOSE_APPLY="request"):
        yield


def edit_in_admin(client, marketer) -> None:  # type: ignore[no-untyped-def]
    client.force_login(marketer)
    url = f"/admin/connections/profile/{Profile.objects.get().pk}/change/"
    data = changeform_data(client.get(url)) | {"last_name": LAST + "x"}
    assert client.post(url, data).status_code == 302
    assert LogEntry.objects.filter(object_repr=CUSTOMER_ID).exists()


def erase(entry: str, client, marketer) -> None:  # type: ignore[no-untyped-def]
    if entry == "dsr":
        response = post_dsr(dsr_message())
        assert response.status_code == 200, response.content
        assert response.json()["type"] == "dsr_processing_response"
    elif entry == "admin":
        client.force_login(marketer)
        response = erase_in_admin(client, list(Profile.objects.values_list("pk", flat=True)))
        assert response.status_code == 302, response.content
    else:
        assert "Erased 1 profile(s)" in erase_by_command()


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
@pytest.mark.parametrize("mode", ["suppress", "delete", "none"])
@pytest.mark.parametrize("entry", ["dsr", "admin", "command"])
def test_an_erased_person_is_gone_here_and_customerio_is_told_as_the_connection_says(
    entry, mode, transport, standin, workspace_connection, client, marketer
):
    connection = workspace_connection("site-us", transport=transport, erasure=mode)
    forwarded_person(connection)
    edit_in_admin(client, marketer)  # the admin's history names the profile now
    assert CUSTOMER_ID in standin.people("site-us")
    assert tables_holding(*PERSONAL)  # the scan finds the person before

    erase(entry, client, marketer)
    sent = erasure_calls.send_due(connection.pk)

    record = ErasureRecord.objects.get()
    assert record.source == {"dsr": "mparticle", "admin": "admin", "command": "command"}[entry]
    assert record.profiles_erased == 1 and record.memberships_erased == 1
    [call] = ErasureCall.objects.all()
    assert call.action == mode
    if mode == "none":
        assert (sent, call.status) == (0, "skipped")
        assert CUSTOMER_ID in standin.people("site-us")  # Customer.io left alone, as configured
    else:
        assert (sent, call.status, call.http_status, call.identifier) == (1, "succeeded", 200, "")
        assert CUSTOMER_ID not in standin.people("site-us")
        suppressed = standin_erasure.suppressed(standin.state, "site-us")
        assert suppressed == ([CUSTOMER_ID] if mode == "suppress" else [])
        [request] = [r for r in standin.requests("site-us") if r.method in ("DELETE", "POST") and CUSTOMER_ID in r.path]
        assert request.path.endswith("/suppress") == (mode == "suppress")
        logged = Delivery.objects.get(action=mode)
        assert (logged.status, logged.customer_id, logged.attributes) == ("succeeded", "", {})
    assert not Profile.objects.exists()
    # Nothing of the person is left anywhere: profiles, memberships, outbox, log, messages, records, history.
    assert tables_holding(*PERSONAL) == {}


def test_a_dsr_is_stored_without_the_person_for_replay_protection(standin, workspace_connection):
    forwarded_person(workspace_connection("site-us"))
    message = dsr_message()

    first = post_dsr(message)
    again = post_dsr(message)

    assert first.status_code == again.status_code == 200
    assert first.content == again.content  # a replay gets the first answer
    stored = FirehoseMessage.objects.get()
    assert stored.message_type == "dsr_processing_request"
    assert EMAIL.lower() not in str(stored.response).lower() and CUSTOMER_ID not in str(stored.response)
