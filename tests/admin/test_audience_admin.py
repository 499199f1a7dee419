"""Audiences: subscriptions added inline are activated with a backfill; renames and deletions go through the service."""

from __future__ import annotations

import pytest

from connections.models import Audience, Delivery, Forward, Subscription
from tests.support.admin import add_inline_row, admin_url, changeform_data, make_forward
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def audience(db):
    audience = AudienceFactory(name="New Users")
    MembershipFactory.create_batch(2, audience=audience)
    return audience


def edit(client, audience: Audience, **changes):  # type: ignore[no-untyped-def]
    url = admin_url(Audience, "change", audience.pk)
    data = changeform_data(client.get(url))
    for key, value in changes.items():
        data[key] = value
    return client.post(url, data), data


def test_a_subscription_added_inline_is_active_and_backfills(client, marketer, audience):
    connection = ConnectionFactory()
    client.force_login(marketer)
    url = admin_url(Audience, "change", audience.pk)
    data = changeform_data(client.get(url))
    add_inline_row(data, "subscriptions", connection=connection.pk, audience=audience.pk)

    response = client.post(url, data)

    assert response.status_code == 302
    assert Subscription.objects.get(audience=audience, connection=connection).status == Subscription.Status.ACTIVE
    assert Forward.objects.filter(connection=connection, reason=Forward.Reason.ACTIVATION).count() == 2


def test_an_existing_inline_subscription_keeps_its_connection_and_status(client, marketer, audience):
    subscription = SubscriptionFactory(audience=audience, status=Subscription.Status.INACTIVE)
    connection = subscription.connection
    client.force_login(marketer)
    form = client.get(admin_url(Audience, "change", audience.pk)).context["inline_admin_formsets"][0].formset.forms[0]
    assert form.fields["connection"].disabled

    response, _data = edit(client, audience, **{"subscriptions-0-connection": ConnectionFactory().pk})

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.connection == connection
    assert subscription.status == Subscription.Status.INACTIVE
    assert Subscription.objects.filter(audience=audience).count() == 1
    assert Forward.objects.count() == 0


def test_a_subscription_deleted_inline_has_its_queued_forwards_cancelled(client, marketer, audience):
    subscription = SubscriptionFactory(audience=audience)
    make_forward(subscription.connection, audience.memberships.first().profile, audience)
    client.force_login(marketer)

    response, _data = edit(client, audience, **{"subscriptions-0-DELETE": "on"})

    assert response.status_code == 302
    assert not Subscription.objects.exists()
    assert Forward.objects.count() == 0
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_renaming_resends_members_where_one_attribute_per_audience_is_on(client, marketer, audience):
    toggled = SubscriptionFactory(audience=audience, connection=ConnectionFactory(one_attribute_per_audience=True))
    SubscriptionFactory(audience=audience, connection=ConnectionFactory(one_attribute_per_audience=False))
    client.force_login(marketer)

    response, _data = edit(client, audience, name="Recent Users")

    assert response.status_code == 302
    assert Audience.objects.get(pk=audience.pk).name == "Recent Users"
    renamed = Forward.objects.filter(reason=Forward.Reason.RENAME)
    assert set(renamed.values_list("connection_id", flat=True)) == {toggled.connection_id}
    assert renamed.count() == 2


def test_saving_without_a_rename_sends_nothing(client, marketer, audience):
    SubscriptionFactory(audience=audience, connection=ConnectionFactory(one_attribute_per_audience=True))
    client.force_login(marketer)

    response, _data = edit(client, audience)

    assert response.status_code == 302
    assert Forward.objects.count() == 0


def test_the_audience_id_cannot_be_changed(client, marketer, audience):
    client.force_login(marketer)

    response = client.get(admin_url(Audience, "change", audience.pk))

    assert "audience_id" not in response.context["adminform"].form.fields


def test_a_new_audience_with_a_subscription(client, marketer):
    connection = ConnectionFactory()
    client.force_login(marketer)
    data = changeform_data(client.get(admin_url(Audience, "add"))) | {"audience_id": "777", "name": 'VIP, "gold"'}
    add_inline_row(data, "subscriptions", connection=connection.pk)

    response = client.post(admin_url(Audience, "add"), data)

    assert response.status_code == 302
    audience = Audience.objects.get(audience_id=777)
    assert audience.name == 'VIP, "gold"'
    assert audience.subscriptions.get().connection == connection


def test_deleting_an_audience_cancels_its_queued_forwards(client, marketer, audience):
    subscription = SubscriptionFactory(audience=audience)
    make_forward(subscription.connection, audience.memberships.first().profile, audience)
    client.force_login(marketer)
    url = admin_url(Audience, "delete", audience.pk)

    confirmation = client.get(url)
    response = client.post(url, {"post": "yes"})

    assert "Customer.io keeps the attributes it already has" in confirmation.content.decode()
    assert dict(confirmation.context["model_count"]) == {
        "audiences": 1,
        "subscriptions": 1,
        "memberships": 2,
        "pending forwards": 1,
    }
    assert response.status_code == 302
    assert not Audience.objects.exists()
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_deleting_selected_audiences_cancels_their_queued_forwards(client, marketer, audience):
    subscription = SubscriptionFactory(audience=audience)
    make_forward(subscription.connection, audience.memberships.first().profile, audience)
    client.force_login(marketer)
    action = {"action": "delete_selected", "_selected_action": [audience.pk]}

    confirmation = client.post(admin_url(Audience, "changelist"), action)
    client.post(admin_url(Audience, "changelist"), action | {"post": "yes"})

    assert "Customer.io keeps the attributes it already has" in confirmation.content.decode()
    assert not Audience.objects.exists()
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED
