"""An erasure call whose connection is deleted ends, with the identifier blanked (issue 26, defect 4).

The call's connection is SET_NULL: no worker ever claims it again, so left open it kept the raw
identifier forever. Every way of deleting a connection ends its open calls, and the sweep ends any
call found without a connection.
"""

import pytest

from connections import tasks
from connections.models import Connection, ErasureCall, ErasureRecord
from tests.support.erasure import PERSONAL, erase_by_command, forwarded_person, tables_holding
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_call(workspace_connection) -> ErasureCall:
    connection = workspace_connection("site-us")
    forwarded_person(connection)
    erase_by_command()
    call = ErasureCall.objects.get()
    assert (call.status, call.connection_id) == ("pending", connection.pk) and call.identifier
    return call


def delete_in_admin(client, superuser, connection: Connection) -> None:  # type: ignore[no-untyped-def]
    client.force_login(superuser)
    response = client.post(f"/admin/connections/connection/{connection.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content


def delete_selected_in_admin(client, superuser, connection: Connection) -> None:  # type: ignore[no-untyped-def]
    client.force_login(superuser)
    action = {"action": "delete_selected", "_selected_action": [connection.pk], "post": "yes"}
    response = client.post("/admin/connections/connection/", action)
    assert response.status_code == 302, response.content


def delete_queryset(client, superuser, connection: Connection) -> None:  # type: ignore[no-untyped-def]
    Connection.objects.filter(pk=connection.pk).delete()


def delete_instance(client, superuser, connection: Connection) -> None:  # type: ignore[no-untyped-def]
    connection.delete()


def assert_ended_without_identifier(call: ErasureCall) -> None:
    call.refresh_from_db()
    assert (call.status, call.identifier, call.connection_id) == ("failed", "", None)
    assert "connection was deleted before the call was sent" in call.error
    assert call.finished_at is not None and not call.is_open
    assert not ErasureCall.objects.filter(status__in=("pending", "retrying")).exists()
    assert tables_holding(*PERSONAL) == {}


@pytest.mark.parametrize("delete", [delete_in_admin, delete_selected_in_admin, delete_queryset, delete_instance])
def test_deleting_the_connection_ends_its_open_calls_and_blanks_the_identifier(
    delete, pending_call, client, superuser
):
    connection = Connection.objects.get()

    delete(client, superuser, connection)

    assert not Connection.objects.exists()
    assert_ended_without_identifier(pending_call)
    record = ErasureRecord.objects.get()
    assert [c.status for c in record.calls.all()] == ["failed"]


def test_the_sweep_ends_a_call_left_without_its_connection(pending_call):
    # A row left orphaned (by a version without this fix, or a delete that bypassed Django).
    ErasureCall.objects.update(connection=None)
    purge_broker()

    tasks.sweep()

    assert_ended_without_identifier(pending_call)
    purge_broker()


def test_the_sweep_leaves_calls_of_existing_connections_alone(pending_call):
    purge_broker()

    tasks.sweep()

    pending_call.refresh_from_db()
    assert (pending_call.status, pending_call.identifier) == ("pending", pending_call.identifier)
    assert pending_call.identifier
    purge_broker()
