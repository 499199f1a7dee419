"""A connection's page lists the audiences it forwards, each with its state and a toggle that goes through the
subscription's own activate and deactivate (a backfill when activated, a confirmation before deactivating)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission

from connections.models import Connection, Forward, Subscription
from connections.services.visibility import audience_view
from tests.support.admin import admin_url
from tests.support.factories import (
    AudienceFactory,
    ConnectionFactory,
    MembershipFactory,
    ProfileFactory,
    SubscriptionFactory,
    UserFactory,
)
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(db):
    connection = ConnectionFactory(name="Main workspace")
    vip = SubscriptionFactory(connection=connection, audience=AudienceFactory(audience_id=42, name="VIP"))
    lapsed = SubscriptionFactory(
        connection=connection,
        audience=AudienceFactory(audience_id=7, name="Lapsed"),
        status=Subscription.Status.INACTIVE,
        customerio_segment_id=314,
    )
    for profile in ProfileFactory.create_batch(3):
        MembershipFactory(profile=profile, audience=vip.audience)
    for profile in ProfileFactory.create_batch(2):
        MembershipFactory(profile=profile, audience=lapsed.audience)
    MembershipFactory(audience=lapsed.audience, is_member=False)  # an ex-member is not counted
    SubscriptionFactory(audience=AudienceFactory(name="Elsewhere"))  # another connection's
    return connection, vip, lapsed


def rows(html: str) -> list[str]:
    """Each audience row of the connection page as its visible text."""
    found = re.findall(r'<tr class="cio-audience-row".*?</tr>', html, flags=re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in found]


def test_the_page_lists_the_audiences_it_forwards_with_their_state(client, marketer, scene):
    connection, _vip, _lapsed = scene
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert rows(html) == [
        "Lapsed 7 2 Inactive: not forwarded 314 Activate",
        "VIP 42 3 Active: forwarded none Deactivate…",
    ]
    assert "1 of 2 subscriptions are active" in html
    assert "Elsewhere" not in html
    assert f'{admin_url(Subscription, "add")}?connection={connection.pk}' in html


def test_someone_who_may_only_look_sees_the_audiences_without_toggles(client, scene):
    connection, _vip, _lapsed = scene
    onlooker = UserFactory(username="onlooker")
    onlooker.user_permissions.add(*Permission.objects.filter(codename__in=["view_connection", "view_subscription"]))
    client.force_login(onlooker)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert rows(html) == ["Lapsed 7 2 Inactive: not forwarded 314", "VIP 42 3 Active: forwarded none"]
    assert "Deactivate…" not in html and 'name="next"' not in html
    assert "Forward another audience" not in html


def test_activating_from_the_connection_page_sends_the_members_and_comes_back(client, marketer, scene):
    connection, _vip, lapsed = scene
    purge_broker()
    client.force_login(marketer)
    page = admin_url(Connection, "change", connection.pk)

    response = client.post(admin_url(Subscription, "activate", lapsed.pk), {"next": page}, follow=True)

    assert response.redirect_chain == [(page, 302)]
    lapsed.refresh_from_db()
    assert lapsed.status == Subscription.Status.ACTIVE
    assert Forward.objects.filter(connection=connection, audience=lapsed.audience).count() == 2  # its members
    [message] = [m.message for m in response.context["messages"]]
    assert message.startswith("Activated 1 subscription: the audience's current members are queued")
    assert "Lapsed 7 2 Active: forwarded 314 Deactivate…" in rows(response.content.decode())
    purge_broker()


def test_deactivating_from_the_connection_page_asks_first_then_comes_back(client, marketer, scene):
    connection, vip, _lapsed = scene
    client.force_login(marketer)
    page = admin_url(Connection, "change", connection.pk)

    confirmation = client.post(admin_url(Subscription, "deactivate", vip.pk), {"next": page})

    vip.refresh_from_db()
    assert vip.status == Subscription.Status.ACTIVE, "nothing changes before the confirmation"
    html = confirmation.content.decode()
    assert "Deactivate this subscription?" in html
    assert f'<input type="hidden" name="next" value="{page}">' in html

    response = client.post(
        admin_url(Subscription, "deactivate", vip.pk), {"next": page, "post": "yes"}, follow=True
    )

    assert response.redirect_chain == [(page, 302)]
    vip.refresh_from_db()
    assert vip.status == Subscription.Status.INACTIVE
    assert "VIP 42 3 Inactive: not forwarded none Activate" in rows(response.content.decode())


def test_a_next_address_on_another_site_is_ignored(client, marketer, scene):
    _connection, _vip, lapsed = scene
    purge_broker()
    client.force_login(marketer)

    response = client.post(admin_url(Subscription, "activate", lapsed.pk), {"next": "https://evil.example/"})

    assert response["Location"] == admin_url(Subscription, "change", lapsed.pk)
    purge_broker()


def test_a_connection_with_many_audiences_shows_the_first_and_links_to_the_rest(client, marketer):
    connection = ConnectionFactory()
    for n in range(audience_view.CONNECTION_AUDIENCES_SHOWN + 3):
        SubscriptionFactory(connection=connection, audience=AudienceFactory(name=f"Audience {n:03d}"))
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert len(rows(html)) == audience_view.CONNECTION_AUDIENCES_SHOWN
    assert f"See all {audience_view.CONNECTION_AUDIENCES_SHOWN + 3} subscriptions" in html
    assert f'{admin_url(Subscription, "changelist")}?connection__id__exact={connection.pk}' in html
