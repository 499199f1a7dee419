"""The admin for SPEC section 11: the connection's new options, the App API key, the SegmentMembership
overwrite warning, a subscription's manual segment id and the "Create a manual segment" action."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.db import connection as db

from connections.models import Connection, Forward, Subscription
from tests.conftest import STANDIN_APP_KEYS
from tests.support.admin import admin_url, changeform_data
from tests.support.factories import AudienceFactory, ConnectionFactory, MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

APP_KEY = "app-live-Zr8Tq3Vn6Hc1"
CHANGELIST = admin_url(Subscription, "changelist")


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(message) for message in get_messages(response.wsgi_request)]


def stored_app_ciphertext(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT app_api_key FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def new_connection_data(**overrides: str) -> dict[str, str]:
    return {
        "name": "Main",
        "site_id": "site-main",
        "api_key": "sk-main-0001",
        "region": "us",
        "transport": "v2_batch",
        "rate_limit": "100",
        "identify_by": "customer_id",
        "erasure": "suppress",
        **overrides,
    }


# --- the connection form ------------------------------------------------------------------


def test_a_marketer_sets_the_new_options_on_a_connection(client, marketer):
    client.force_login(marketer)
    data = new_connection_data(
        identify_by="customer_id_or_email",
        update_existing_only="on",
        one_attribute_per_audience="on",
        segment_membership_always="on",
        erasure="delete",
        app_api_key=APP_KEY,
    )

    response = client.post(admin_url(Connection, "add"), data)

    assert response.status_code == 302
    created = Connection.objects.get(name="Main")
    assert created.identify_by == "customer_id_or_email"
    assert created.update_existing_only and created.segment_membership_always
    assert created.erasure == "delete"
    assert created.app_api_key == APP_KEY
    assert APP_KEY not in stored_app_ciphertext(created.pk), "stored encrypted"


def test_update_only_with_the_v1_transport_is_refused_with_the_reason_and_nothing_is_saved(client, marketer):
    connection = ConnectionFactory(transport="v1")
    client.force_login(marketer)
    url = admin_url(Connection, "change", connection.pk)
    data = changeform_data(client.get(url)) | {"update_existing_only": "on"}

    response = client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["update_existing_only"]
    assert "works with the v2 batch transport" in errors[0]
    assert '"_update" flag' in errors[0]
    assert not Connection.objects.get(pk=connection.pk).update_existing_only


def test_update_only_with_v2_is_accepted(client, marketer):
    connection = ConnectionFactory(transport="v2_batch")
    client.force_login(marketer)
    url = admin_url(Connection, "change", connection.pk)

    response = client.post(url, changeform_data(client.get(url)) | {"update_existing_only": "on"})

    assert response.status_code == 302
    assert Connection.objects.get(pk=connection.pk).update_existing_only


def test_the_app_api_key_is_write_only_blank_keeps_it_and_a_new_one_replaces_it(client, superuser):
    connection = ConnectionFactory(app_api_key=APP_KEY)
    client.force_login(superuser)
    url = admin_url(Connection, "change", connection.pk)

    page = client.get(url).content.decode()
    assert APP_KEY not in page and APP_KEY[-5:] not in page
    assert stored_app_ciphertext(connection.pk) not in page
    assert "…6Hc1" in page  # the hint in the help text

    client.post(url, changeform_data(client.get(url)) | {"app_api_key": ""})
    assert Connection.objects.get(pk=connection.pk).app_api_key == APP_KEY

    client.post(url, changeform_data(client.get(url)) | {"app_api_key": "app-new-key-9999"})
    replaced = Connection.objects.get(pk=connection.pk)
    assert replaced.app_api_key == "app-new-key-9999"
    assert replaced.app_api_key_last4 == "9999"


def test_the_list_shows_at_most_the_last_four_characters_of_the_app_api_key(client, marketer):
    ConnectionFactory(app_api_key=APP_KEY)
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "changelist")).content.decode()

    assert "…6Hc1" in html
    assert APP_KEY[-5:] not in html


# --- the SegmentMembership overwrite warning -----------------------------------------------


@pytest.mark.parametrize(
    ("other_fields", "warned"),
    [
        pytest.param({}, True, id="other-toggle-off"),
        pytest.param({"one_attribute_per_audience": True}, False, id="other-toggle-on"),
        pytest.param(
            {"one_attribute_per_audience": True, "segment_membership_always": True}, True, id="other-always"
        ),
        pytest.param({"site_id": "another-site"}, False, id="other-workspace"),
    ],
)
def test_saving_a_second_segment_membership_writer_to_one_site_id_warns_naming_the_other(
    client, marketer, other_fields, warned
):
    other_fields = {"site_id": "site-main", **other_fields}
    ConnectionFactory(name="Marketing EU", **other_fields)
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "add"), new_connection_data())

    assert response.status_code == 302, "saved all the same"
    warnings = [m for m in messages_of(response) if "overwrite each other" in m]
    if warned:
        assert warnings == [
            "Main and Marketing EU both write SegmentMembership to the Customer.io workspace with Site ID "
            "site-main: each sends only its own audiences, so their values overwrite each other. Turn on one "
            "attribute per audience (without SegmentMembership always) on one of them, or forward both sets of "
            "audiences through one connection."
        ]
    else:
        assert warnings == []


def test_a_connection_with_the_toggle_on_and_without_always_is_never_warned_about(client, marketer):
    ConnectionFactory(name="Other", site_id="site-main")
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "add"), new_connection_data(one_attribute_per_audience="on"))

    assert not [m for m in messages_of(response) if "overwrite each other" in m]


# --- Test credentials with an App API key ---------------------------------------------------


def test_test_credentials_checks_the_app_api_key_too(client, marketer, standin, workspace_connection):
    connection = workspace_connection(with_app_api_key=True)
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "test_credentials", connection.pk), follow=True)

    found = messages_of(response)
    assert any("accepted the credentials" in m for m in found)
    assert f"{connection.name}: Customer.io accepted the App API key." in found
    assert ("GET", "/v1/segments") in [(r.method, r.path) for r in standin.requests()]


def test_test_credentials_reports_a_rejected_app_api_key_without_showing_it(
    client, marketer, standin, workspace_connection
):
    connection = workspace_connection(app_api_key="app-rejected-4321")
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "test_credentials", connection.pk), follow=True)

    [app_message] = [m for m in messages_of(response) if "App API key" in m]
    assert "rejected the App API key (HTTP 401)" in app_message
    assert "Enter the App API key again" in app_message
    assert "app-rejected" not in response.content.decode()


def test_test_credentials_without_an_app_api_key_checks_only_the_track_key(
    client, marketer, standin, workspace_connection
):
    connection = workspace_connection()
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "test_credentials", connection.pk), follow=True)

    assert not [m for m in messages_of(response) if "App API" in m]
    assert [r.path for r in standin.requests()] == ["/api/v1/accounts/region"]


# --- the subscription's manual segment ------------------------------------------------------


@pytest.fixture
def active_subscription(workspace_connection):
    subscription = SubscriptionFactory(
        connection=workspace_connection(with_app_api_key=True), audience=AudienceFactory(name="New Users")
    )
    MembershipFactory.create_batch(2, audience=subscription.audience)
    MembershipFactory(audience=subscription.audience, is_member=False)
    Forward.objects.all().delete()  # as if the activation backfill had been sent
    return subscription


def create_action(subscription: Subscription) -> dict:
    return {"action": "create_manual_segments", "_selected_action": [subscription.pk], "post": "yes"}


def test_a_marketer_enters_a_segment_id_and_the_members_are_queued_for_it(client, marketer, active_subscription):
    client.force_login(marketer)
    url = admin_url(Subscription, "change", active_subscription.pk)

    response = client.post(url, changeform_data(client.get(url)) | {"customerio_segment_id": "77"})

    assert response.status_code == 302
    assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id == 77
    queued = Forward.objects.filter(audience=active_subscription.audience, reason=Forward.Reason.ACTIVATION)
    assert queued.count() == 2, "the members (not the ex-member) are queued so the segment is backfilled"


def test_clearing_the_segment_id_sends_nothing(client, marketer, active_subscription):
    Subscription.objects.filter(pk=active_subscription.pk).update(customerio_segment_id=77)
    client.force_login(marketer)
    url = admin_url(Subscription, "change", active_subscription.pk)

    client.post(url, changeform_data(client.get(url)) | {"customerio_segment_id": ""})

    assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id is None
    assert not Forward.objects.exists()


def test_a_segment_id_on_an_inactive_subscription_queues_nothing(client, marketer, active_subscription):
    Subscription.objects.filter(pk=active_subscription.pk).update(status=Subscription.Status.INACTIVE)
    client.force_login(marketer)
    url = admin_url(Subscription, "change", active_subscription.pk)

    client.post(url, changeform_data(client.get(url)) | {"customerio_segment_id": "77"})

    assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id == 77
    assert not Forward.objects.exists()


def test_a_segment_id_of_zero_is_refused(client, marketer, active_subscription):
    client.force_login(marketer)
    url = admin_url(Subscription, "change", active_subscription.pk)

    response = client.post(url, changeform_data(client.get(url)) | {"customerio_segment_id": "0"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id is None


def test_a_subscription_is_added_with_its_segment_id(client, marketer, workspace_connection):
    audience = AudienceFactory()
    MembershipFactory(audience=audience)
    connection = workspace_connection()
    client.force_login(marketer)

    response = client.post(
        admin_url(Subscription, "add"),
        {"audience": audience.pk, "connection": connection.pk, "customerio_segment_id": "12"},
    )

    assert response.status_code == 302
    subscription = Subscription.objects.get(audience=audience, connection=connection)
    assert (subscription.status, subscription.customerio_segment_id) == (Subscription.Status.ACTIVE, 12)
    assert Forward.objects.filter(audience=audience).count() == 1


def test_the_action_creates_a_manual_segment_named_after_the_audience_and_stores_its_id(
    client, marketer, standin, active_subscription
):
    client.force_login(marketer)

    response = client.post(CHANGELIST, create_action(active_subscription), follow=True)

    [segment] = standin.segments("site-us")
    assert segment["name"] == "New Users"
    assert str(active_subscription.audience.audience_id) in segment["description"]
    assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id == segment["id"]
    [message] = messages_of(response)
    assert f"Created the manual segment “New Users” (ID {segment['id']})" in message
    assert "current members are queued" in message
    assert Forward.objects.filter(audience=active_subscription.audience).count() == 2
    [request] = [r for r in standin.requests("site-us") if r.path == "/v1/segments"]
    assert STANDIN_APP_KEYS["site-us"] not in str(request.to_json())


def test_the_action_without_an_app_api_key_says_what_to_do_and_changes_nothing(
    client, marketer, standin, workspace_connection
):
    subscription = SubscriptionFactory(connection=workspace_connection())
    client.force_login(marketer)

    response = client.post(CHANGELIST, create_action(subscription), follow=True)

    [message] = messages_of(response)
    assert "has no App API key: add one on the connection" in message
    assert "enter its ID on the subscription" in message
    assert Subscription.objects.get(pk=subscription.pk).customerio_segment_id is None
    assert standin.requests() == []


def test_the_action_refuses_a_subscription_that_already_has_a_segment(client, marketer, standin, active_subscription):
    Subscription.objects.filter(pk=active_subscription.pk).update(customerio_segment_id=5)
    client.force_login(marketer)

    response = client.post(CHANGELIST, create_action(active_subscription), follow=True)

    [message] = messages_of(response)
    assert "already uses manual segment 5" in message
    assert standin.segments("site-us") == []


def test_the_action_with_a_rejected_app_api_key_reports_it_without_the_key(
    client, marketer, standin, workspace_connection
):
    subscription = SubscriptionFactory(connection=workspace_connection(app_api_key="app-bad-key-7777"))
    client.force_login(marketer)

    response = client.post(CHANGELIST, create_action(subscription), follow=True)

    [message] = messages_of(response)
    assert "rejected the App API key (HTTP 401)" in message
    assert "Enter the App API key again on the connection and save." in message
    assert "app-bad-key" not in response.content.decode()
    assert Subscription.objects.get(pk=subscription.pk).customerio_segment_id is None


# --- roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("anonymous", False), ("log_viewer", False), ("marketer", True), ("superuser", True)],
)
def test_who_may_create_a_manual_segment(as_role, standin, active_subscription, role, allowed):
    client = as_role(role)

    response = client.post(CHANGELIST, create_action(active_subscription))

    stored = Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id
    if allowed:
        assert response.status_code == 302
        assert stored is not None and len(standin.segments("site-us")) == 1
    else:
        assert response.status_code in (302, 403)
        if response.status_code == 302:
            assert "/login/" in response["Location"]
        assert stored is None and standin.segments("site-us") == []


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("anonymous", False), ("log_viewer", False), ("marketer", True), ("superuser", True)],
)
def test_who_may_change_the_segment_id_and_the_connection_options(as_role, active_subscription, role, allowed):
    client = as_role(role)
    subscription_url = admin_url(Subscription, "change", active_subscription.pk)
    connection_url = admin_url(Connection, "change", active_subscription.connection.pk)

    responses = [client.get(subscription_url), client.get(connection_url)]
    client.post(subscription_url, {"customerio_segment_id": "9"})

    if allowed:
        assert [r.status_code for r in responses] == [200, 200]
        assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id == 9
    else:
        assert all(r.status_code in (302, 403) for r in responses)
        assert Subscription.objects.get(pk=active_subscription.pk).customerio_segment_id is None
