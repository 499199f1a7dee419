"""Resync and "Create a manual segment" ask first: the page says how many people and requests they will
send, and does nothing until it is confirmed (as deactivating and erasing do)."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from connections.models import Connection, ResyncRun, Subscription
from tests.support.admin import admin_url
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory, SubscriptionFactory
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db

CONFIRM = {"post": "yes"}


def text(response) -> str:  # type: ignore[no-untyped-def]
    """The page's words, without tags and with spaces folded, as a person reads them."""
    html = response.content.decode()
    content = html[html.index('id="content"') :]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", content))


def row(response, name: str) -> str:  # type: ignore[no-untyped-def]
    """The estimate table's row of `name`: its cells' text."""
    html = response.content.decode()
    for found in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        if name in found:
            return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found)).strip()
    raise AssertionError(f"no row for {name}")


def members(subscription: Subscription, count: int, *, ex_members: int = 0) -> None:
    MembershipFactory.create_batch(count, audience=subscription.audience)
    MembershipFactory.create_batch(ex_members, audience=subscription.audience, is_member=False)


@pytest.fixture
def v2_connection(db):
    subscription = SubscriptionFactory(connection=ConnectionFactory(name="US workspace"))
    members(subscription, 3, ex_members=1)
    SubscriptionFactory(connection=subscription.connection, status="inactive")  # not resynced
    return subscription.connection


# --- Resync ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_resync_button_shows_people_and_requests_and_starts_nothing(client, marketer, v2_connection, method):
    client.force_login(marketer)

    response = getattr(client, method)(admin_url(Connection, "resync", v2_connection.pk))

    assert response.status_code == 200
    page = text(response)
    assert "Resync US workspace?" in page
    assert "People to send: 4. Requests to Customer.io: about 1." in page  # 3 members and 1 ex-member, one batch
    assert row(response, "US workspace") == "US workspace 4 1 v2 batches of up to 1,000 people."
    assert 'value="Yes, resync"' in response.content.decode()
    assert not ResyncRun.objects.exists()


def test_confirming_the_resync_starts_it(client, marketer, v2_connection):
    purge_broker()
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "resync", v2_connection.pk), CONFIRM)

    assert response.status_code == 302
    assert response["Location"] == admin_url(Connection, "change", v2_connection.pk)
    assert ResyncRun.objects.get(connection=v2_connection).total == 4
    purge_broker()


@override_settings(FORWARD_BATCH_SIZE=2)
def test_v2_requests_follow_the_batch_size_and_v1_sends_one_per_person(client, marketer, v2_connection):
    v1 = SubscriptionFactory(connection=ConnectionFactory(name="V1 workspace", transport="v1")).connection
    members(v1.subscriptions.get(), 5)
    faulted = ConnectionFactory(name="Faulted workspace", state=Connection.State.FAULTED)
    members(SubscriptionFactory(connection=faulted), 1)
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "changelist"),
        {"action": "resync_connections", "_selected_action": [v2_connection.pk, v1.pk, faulted.pk]},
    )

    assert response.status_code == 200
    assert row(response, "US workspace") == "US workspace 4 2 v2 batches of up to 2 people."
    assert row(response, "V1 workspace") == "V1 workspace 5 5 v1: one request per person."
    assert row(response, "Faulted workspace") == (
        "Faulted workspace 1 1 v2 batches of up to 2 people; faulted: sent once it is resumed."
    )
    assert "Total 10 8" in text(response)
    assert not ResyncRun.objects.exists()


def test_segments_add_their_requests_to_a_resync(client, marketer, v2_connection):
    Subscription.objects.filter(connection=v2_connection, status="active").update(customerio_segment_id=77)
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "resync", v2_connection.pk))

    # One batch, then one request adding the 3 members to segment 77 and one removing the ex-member.
    assert row(response, "US workspace") == "US workspace 4 3 v2 batches of up to 1,000 people."


def test_a_connection_without_members_is_said_to_send_nothing(client, marketer):
    empty = ConnectionFactory(name="Empty workspace")
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "resync", empty.pk))

    assert row(response, "Empty workspace") == (
        "Empty workspace 0 0 v2 batches of up to 1,000 people; no member in an active subscription: nothing is sent."
    )


def test_the_list_action_resyncs_every_selected_connection_once_confirmed(client, marketer, v2_connection):
    purge_broker()
    other = SubscriptionFactory().connection
    members(other.subscriptions.get(), 1)
    client.force_login(marketer)

    client.post(
        admin_url(Connection, "changelist"),
        {"action": "resync_connections", "_selected_action": [v2_connection.pk, other.pk], **CONFIRM},
    )

    assert set(ResyncRun.objects.values_list("connection_id", "total")) == {(v2_connection.pk, 4), (other.pk, 1)}
    purge_broker()


def test_log_viewers_get_no_resync_confirmation(client, log_viewer, v2_connection):
    client.force_login(log_viewer)

    assert client.get(admin_url(Connection, "resync", v2_connection.pk)).status_code == 403


# --- Create a manual segment ------------------------------------------------------------------------


@pytest.fixture
def segment_subscriptions(workspace_connection):
    connection = workspace_connection(with_app_api_key=True)
    active = SubscriptionFactory(connection=connection, audience=AudienceFactory(name="New Users"))
    members(active, 2, ex_members=1)
    inactive = SubscriptionFactory(connection=connection, audience=AudienceFactory(name="Lapsed"), status="inactive")
    members(inactive, 4)
    named = SubscriptionFactory(
        connection=connection, audience=AudienceFactory(name="Has one"), customerio_segment_id=55
    )
    return active, inactive, named


def segment_action(*subscriptions: Subscription, **extra: str) -> dict:
    return {"action": "create_manual_segments", "_selected_action": [s.pk for s in subscriptions], **extra}


def test_create_manual_segment_shows_people_and_requests_and_creates_nothing(
    client, marketer, standin, segment_subscriptions
):
    active, inactive, named = segment_subscriptions
    client.force_login(marketer)

    response = client.post(admin_url(Subscription, "changelist"), segment_action(active, inactive, named))

    assert response.status_code == 200
    # The active one: the segment, one batch of its 2 members, one request adding them to the segment.
    assert row(response, "New Users") == (
        f"New Users → {active.connection.name} 2 3 One request creates the segment; the members are sent "
        "(v2 batches of up to 1,000 people) and added to it."
    )
    assert row(response, "Lapsed").startswith(f"Lapsed → {inactive.connection.name} 0 1 Inactive")
    assert row(response, "Has one") == (
        f"Has one → {named.connection.name} — — Already uses manual segment 55: nothing is created."
    )
    assert "People to send: 2. Requests to Customer.io: about 4." in text(response)
    assert standin.segments("site-us") == []
    assert Subscription.objects.get(pk=active.pk).customerio_segment_id is None


def test_confirming_creates_the_segments(client, marketer, standin, segment_subscriptions):
    active, _inactive, _named = segment_subscriptions
    client.force_login(marketer)

    client.post(admin_url(Subscription, "changelist"), segment_action(active, **CONFIRM))

    [segment] = standin.segments("site-us")
    assert Subscription.objects.get(pk=active.pk).customerio_segment_id == segment["id"]
