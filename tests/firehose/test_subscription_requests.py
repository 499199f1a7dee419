"""audience_subscription_request: add / update / remove on the connection named by the Connection Key."""

import pytest

from connections.models import Audience, Forward, Subscription
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory, SubscriptionFactory
from tests.support.firehose import row_counts

pytestmark = pytest.mark.django_db


def test_add_creates_the_audience_and_an_active_subscription(post, subscription_request, connection):
    response = post(subscription_request(audience_id=77, audience_name="Big spenders", action="add"))

    assert response.status_code == 200
    subscription = Subscription.objects.get()
    assert (subscription.audience.audience_id, subscription.audience.name) == (77, "Big spenders")
    assert (subscription.connection, subscription.status) == (connection, "active")


def test_add_backfills_the_current_members_of_a_known_audience(post, subscription_request, connection):
    membership = MembershipFactory(audience=AudienceFactory(audience_id=77, name="Big spenders"))

    post(subscription_request(audience_id=77, audience_name="Big spenders", action="add"))

    forward = Forward.objects.get()
    assert (forward.connection, forward.profile, forward.reason) == (connection, membership.profile, "activation")


def test_add_reactivates_an_inactive_subscription(post, subscription_request, connection):
    sub = SubscriptionFactory(
        audience=AudienceFactory(audience_id=77), connection=connection, status=Subscription.Status.INACTIVE
    )

    post(subscription_request(audience_id=77, audience_name=sub.audience.name, action="add"))

    sub.refresh_from_db()
    assert sub.is_active


def test_add_takes_the_name_mparticle_sends(post, subscription_request):
    AudienceFactory(audience_id=77, name="77")

    post(subscription_request(audience_id=77, audience_name="Big spenders", action="add"))

    assert Audience.objects.get(audience_id=77).name == "Big spenders"


def test_update_renames_the_audience(post, subscription_request, connection):
    SubscriptionFactory(audience=AudienceFactory(audience_id=77, name="Old name"), connection=connection)

    response = post(subscription_request(audience_id=77, audience_name="New name", action="update"))

    assert response.status_code == 200
    assert Audience.objects.get(audience_id=77).name == "New name"
    assert Subscription.objects.get().is_active


def test_update_of_an_unknown_subscription_creates_it_active(post, subscription_request, connection):
    post(subscription_request(audience_id=77, audience_name="Big spenders", action="update"))

    subscription = Subscription.objects.get()
    assert (subscription.audience.audience_id, subscription.connection, subscription.is_active) == (
        77,
        connection,
        True,
    )


def test_update_leaves_a_subscription_paused_here_paused(post, subscription_request, connection):
    SubscriptionFactory(
        audience=AudienceFactory(audience_id=77), connection=connection, status=Subscription.Status.INACTIVE
    )

    post(subscription_request(audience_id=77, audience_name="Renamed", action="update"))

    assert Subscription.objects.get().status == "inactive"


def test_remove_deactivates_the_subscription_and_sends_nothing(post, subscription_request, connection):
    membership = MembershipFactory(audience=AudienceFactory(audience_id=77))
    sub = SubscriptionFactory(audience=membership.audience, connection=connection)

    response = post(subscription_request(audience_id=77, audience_name=sub.audience.name, action="remove"))

    assert response.status_code == 200
    sub.refresh_from_db()
    assert sub.status == "inactive"
    assert Forward.objects.count() == 0


def test_remove_only_touches_the_connection_named_by_the_key(post, subscription_request, connection):
    audience = AudienceFactory(audience_id=77)
    SubscriptionFactory(audience=audience, connection=connection)
    other = SubscriptionFactory(audience=audience, connection=ConnectionFactory())

    post(subscription_request(audience_id=77, audience_name=audience.name, action="remove"))

    other.refresh_from_db()
    assert other.is_active


def test_remove_of_an_unknown_audience_is_answered_and_changes_nothing(post, subscription_request):
    before = row_counts()

    response = post(subscription_request(audience_id=77, audience_name="Never seen", action="remove"))

    assert response.status_code == 200
    assert row_counts() == {**before, "connections.FirehoseMessage": before["connections.FirehoseMessage"] + 1}


def test_an_unknown_connection_key_is_refused_naming_the_setting(post, subscription_request):
    message = subscription_request(action="add")
    message["account"]["account_settings"]["connectionKey"] = "not-a-key"
    before = row_counts()

    response = post(message)

    assert response.status_code == 400
    assert "account.account_settings.connectionKey" in response.json()["error"]
    assert "no connection" in response.json()["error"]
    assert row_counts() == before


def test_a_missing_connection_key_is_refused(post, subscription_request):
    message = subscription_request(action="add")
    del message["account"]["account_settings"]["connectionKey"]
    before = row_counts()

    response = post(message)

    assert response.status_code == 400
    assert response.json()["error"].startswith("account.account_settings.connectionKey: is required")
    assert row_counts() == before
