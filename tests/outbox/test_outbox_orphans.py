"""Outbox rows a race leaves behind are finished, never stuck (the outbox has no foreign key constraints).

Each foreign key constraint cost every queued forward a locking lookup at commit, most of a
Firehose message's commit (issue 14), so `Forward` keeps none. Deleting a profile or a connection
still deletes its rows (Django's collector), but a transaction that queued a row at the same
moment can commit it afterwards: here that state is made directly, a row naming an id that no
longer exists.
"""

import logging

import pytest
from django.db.models import Max
from django.utils import timezone

from connections.models import Connection, Delivery, Forward
from connections.services.forwarding.payloads import PROFILE_GONE
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db


def queue_row(connection_id, profile_id, audience=None):
    now = timezone.now()
    return Forward.objects.create(
        connection_id=connection_id,
        profile_id=profile_id,
        audience=audience,
        reason=Forward.Reason.MEMBERSHIP,
        due_at=now,
        created_at=now,
    )


def test_a_row_whose_profile_is_gone_is_cancelled_and_the_others_are_sent(standin, workspace_connection):
    connection = workspace_connection("site-us")
    audience = AudienceFactory(audience_id=123)
    subscriptions.subscribe(audience, connection)
    # The orphan is queued first, so that the profiles planned after it show it stops nothing.
    queue_row(connection.pk, 10**12, audience)
    apply_changes([ProfileChange(ProfileInput(customer_id=c), {123: True}) for c in ("c1", "c2")])

    report = forward_pending(connection.pk)

    assert set(standin.people("site-us")) == {"c1", "c2"}
    assert report.succeeded == 2 and report.cancelled == 1
    cancelled = Delivery.objects.get(status=Delivery.Status.CANCELLED)
    assert cancelled.profile_id is None and cancelled.customer_id == "" and cancelled.error == PROFILE_GONE
    assert not Forward.objects.exists()


def test_the_sweep_removes_rows_of_a_deleted_connection_and_keeps_the_others(workspace_connection, caplog):
    from connections.tasks import sweep
    from tests.support.workers import purge_broker

    caplog.set_level(logging.INFO, logger="cioaudience.tasks")
    connection = workspace_connection("site-us")
    audience = AudienceFactory(audience_id=123)
    subscriptions.subscribe(audience, connection)
    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {123: True})])
    kept = Forward.objects.get()
    gone_connection = Connection.objects.aggregate(m=Max("pk"))["m"] + 1000
    queue_row(gone_connection, kept.profile_id, audience)
    purge_broker()

    sweep()

    assert list(Forward.objects.values_list("pk", flat=True)) == [kept.pk]
    assert "sweep removed forwards of deleted connections count=1" in caplog.messages
    purge_broker()
