"""Activating backfills, deactivating asks first and leaves Customer.io untouched (SPEC §3, §6)."""

from __future__ import annotations

import pytest
from django.test import Client

from connections.models import Delivery, Forward, Subscription
from tests.support.admin import admin_url, make_forward
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

KEEPS = "Customer.io keeps the attributes it already has: nothing is sent and nothing is cleared."
CHANGELIST = admin_url(Subscription, "changelist")


@pytest.fixture
def subscription(db):
    """An active subscription with a forward queued for one of its two members."""
    subscription = SubscriptionFactory()
    members = MembershipFactory.create_batch(2, audience=subscription.audience)
    MembershipFactory(audience=subscription.audience, is_member=False)  # a recorded ex-member
    make_forward(subscription.connection, members[0].profile, subscription.audience)
    return subscription


def status_of(subscription: Subscription) -> str:
    return Subscription.objects.get(pk=subscription.pk).status


def deactivate_action(subscription: Subscription, **extra: str) -> dict:
    return {"action": "deactivate_subscriptions", "_selected_action": [subscription.pk], **extra}


def test_the_deactivate_action_asks_for_confirmation_and_changes_nothing_yet(client, marketer, subscription):
    client.force_login(marketer)

    response = client.post(CHANGELIST, deactivate_action(subscription))

    html = response.content.decode()
    assert response.status_code == 200
    assert KEEPS in html
    assert "Forwards still queued for these subscriptions are cancelled." in html
    assert str(subscription) in html
    assert status_of(subscription) == Subscription.Status.ACTIVE
    assert Forward.objects.count() == 1


def test_confirming_deactivates_and_cancels_queued_forwards(client, marketer, subscription):
    client.force_login(marketer)

    response = client.post(CHANGELIST, deactivate_action(subscription, post="yes"), follow=True)

    assert status_of(subscription) == Subscription.Status.INACTIVE
    assert Forward.objects.count() == 0
    cancelled = Delivery.objects.get()
    assert cancelled.status == Delivery.Status.CANCELLED
    assert cancelled.connection == subscription.connection
    assert "Deactivated 1 subscription" in response.content.decode()


def test_activating_queues_the_audiences_current_members(client, marketer):
    subscription = SubscriptionFactory(status=Subscription.Status.INACTIVE)
    members = MembershipFactory.create_batch(3, audience=subscription.audience)
    MembershipFactory(audience=subscription.audience, is_member=False)
    client.force_login(marketer)

    response = client.post(
        CHANGELIST, {"action": "activate_subscriptions", "_selected_action": [subscription.pk]}, follow=True
    )

    assert status_of(subscription) == Subscription.Status.ACTIVE
    queued = Forward.objects.filter(connection=subscription.connection, reason=Forward.Reason.ACTIVATION)
    assert sorted(queued.values_list("profile_id", flat=True)) == sorted(m.profile_id for m in members)
    assert "Activated 1 subscription" in response.content.decode()


def test_activating_an_active_subscription_queues_nothing(client, marketer, subscription):
    client.force_login(marketer)

    response = client.post(
        CHANGELIST, {"action": "activate_subscriptions", "_selected_action": [subscription.pk]}, follow=True
    )

    assert Forward.objects.count() == 1  # only the one queued before
    assert "Nothing changed" in response.content.decode()


def test_the_status_is_read_only_on_the_change_page(client, marketer, subscription):
    client.force_login(marketer)

    response = client.get(admin_url(Subscription, "change", subscription.pk))

    assert "status" not in response.context["adminform"].form.fields


def test_the_change_page_has_a_deactivate_button_that_confirms_first(client, marketer, subscription):
    client.force_login(marketer)
    deactivate_url = admin_url(Subscription, "deactivate", subscription.pk)

    page = client.get(admin_url(Subscription, "change", subscription.pk)).content.decode()
    confirmation = client.post(deactivate_url)

    assert f'action="{deactivate_url}"' in page
    assert KEEPS in confirmation.content.decode()
    assert status_of(subscription) == Subscription.Status.ACTIVE


def test_confirming_on_the_page_deactivates_and_returns_to_it(client, marketer, subscription):
    client.force_login(marketer)

    response = client.post(admin_url(Subscription, "deactivate", subscription.pk), {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == admin_url(Subscription, "change", subscription.pk)
    assert status_of(subscription) == Subscription.Status.INACTIVE
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_the_activate_button_backfills(client, marketer):
    subscription = SubscriptionFactory(status=Subscription.Status.INACTIVE)
    MembershipFactory.create_batch(2, audience=subscription.audience)
    client.force_login(marketer)
    activate_url = admin_url(Subscription, "activate", subscription.pk)

    page = client.get(admin_url(Subscription, "change", subscription.pk)).content.decode()
    response = client.post(activate_url)

    assert f'action="{activate_url}"' in page
    assert response.status_code == 302
    assert status_of(subscription) == Subscription.Status.ACTIVE
    assert Forward.objects.filter(reason=Forward.Reason.ACTIVATION).count() == 2


def test_the_buttons_answer_only_posts(client, marketer, subscription):
    client.force_login(marketer)

    assert client.get(admin_url(Subscription, "activate", subscription.pk)).status_code == 405
    assert client.get(admin_url(Subscription, "deactivate", subscription.pk)).status_code == 405


def test_the_buttons_need_a_csrf_token(marketer, subscription):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)

    response = client.post(admin_url(Subscription, "deactivate", subscription.pk), {"post": "yes"})

    assert response.status_code == 403
    assert status_of(subscription) == Subscription.Status.ACTIVE


def test_a_log_viewer_cannot_press_the_buttons(client, log_viewer, subscription):
    client.force_login(log_viewer)

    response = client.post(admin_url(Subscription, "deactivate", subscription.pk), {"post": "yes"})

    assert response.status_code == 403
    assert status_of(subscription) == Subscription.Status.ACTIVE


def test_adding_a_subscription_starts_it_active_with_a_backfill(client, marketer):
    audience = AudienceFactory()
    MembershipFactory.create_batch(2, audience=audience)
    connection = ConnectionFactory()
    client.force_login(marketer)

    response = client.post(admin_url(Subscription, "add"), {"audience": audience.pk, "connection": connection.pk})

    assert response.status_code == 302
    subscription = Subscription.objects.get(audience=audience, connection=connection)
    assert subscription.status == Subscription.Status.ACTIVE
    assert Forward.objects.filter(connection=connection, reason=Forward.Reason.ACTIVATION).count() == 2


def test_deleting_a_subscription_cancels_its_queued_forwards_and_says_customerio_keeps_its_attributes(
    client, marketer, subscription
):
    client.force_login(marketer)
    url = admin_url(Subscription, "delete", subscription.pk)

    confirmation = client.get(url)
    response = client.post(url, {"post": "yes"})

    assert KEEPS in confirmation.content.decode()
    assert response.status_code == 302
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
    assert Forward.objects.count() == 0
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_deleting_selected_subscriptions_confirms_the_same_way_and_cancels(client, marketer, subscription):
    client.force_login(marketer)
    action = {"action": "delete_selected", "_selected_action": [subscription.pk]}

    confirmation = client.post(CHANGELIST, action)
    client.post(CHANGELIST, action | {"post": "yes"})

    assert KEEPS in confirmation.content.decode()
    assert not Subscription.objects.exists()
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_subscriptions_are_searched_by_audience_name_or_id(client, marketer):
    wanted = SubscriptionFactory(audience=AudienceFactory(audience_id=4242, name='Churned, "maybe"'))
    SubscriptionFactory(audience=AudienceFactory(audience_id=42, name="New Users"))
    client.force_login(marketer)

    by_id = client.get(CHANGELIST, {"q": "4242"}).context["cl"].result_list
    by_name = client.get(CHANGELIST, {"q": "Churned"}).context["cl"].result_list
    not_a_number = client.get(CHANGELIST, {"q": "abc"})

    assert list(by_id) == [wanted]
    assert list(by_name) == [wanted]
    assert not_a_number.status_code == 200
