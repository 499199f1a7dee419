"""The API key is write-only: never shown (beyond its last 4 characters), never decrypted to render a page."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection as db

from connections.models import Audience, Connection, Delivery, Forward, InboundToken, Profile, Subscription
from tests.support.admin import admin_url, changeform_data, make_delivery, make_forward, make_token
from tests.support.factories import ConnectionFactory, MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

API_KEY = "sk-live-Qx7Rz9Wm2Kp4"


def stored_ciphertext(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT api_key FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def assert_no_key_in(html: str, connection: Connection) -> None:
    assert API_KEY not in html
    assert API_KEY[-5:] not in html  # at most the last 4 characters
    assert stored_ciphertext(connection.pk) not in html
    assert "gAAAA" not in html  # no Fernet token at all


@pytest.fixture
def workspace(db):
    subscription = SubscriptionFactory(connection=ConnectionFactory(api_key=API_KEY))
    membership = MembershipFactory(audience=subscription.audience)
    make_delivery(subscription.connection, membership.profile, attributes={"SegmentMembership": "'1'"})
    make_forward(subscription.connection, membership.profile, subscription.audience)
    make_token()
    return subscription.connection


def every_page(connection: Connection) -> list[str]:
    subscription = Subscription.objects.get(connection=connection)
    profile = Profile.objects.get()
    objects = [
        connection,
        subscription.audience,
        subscription,
        profile,
        Delivery.objects.get(),
        Forward.objects.get(),
        InboundToken.objects.get(),
    ]
    urls = ["/admin/", "/admin/connections/"]
    for obj in objects:
        urls += [admin_url(type(obj), "changelist"), admin_url(type(obj), "change", obj.pk)]
        urls += [admin_url(type(obj), "history", obj.pk)]
    for model in (Connection, Audience, Subscription, Profile, InboundToken):
        urls.append(admin_url(model, "add"))
    urls.append(admin_url(Connection, "delete", connection.pk))
    return urls


def test_the_api_key_appears_on_no_admin_page(client, superuser, workspace):
    client.force_login(superuser)

    for url in every_page(workspace):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_key_in(response.content.decode(), workspace)


def test_the_list_shows_only_the_last_four_characters(client, superuser, workspace):
    client.force_login(superuser)

    html = client.get(admin_url(Connection, "changelist")).content.decode()

    assert "…2Kp4" in html
    assert_no_key_in(html, workspace)


def test_no_page_needs_to_decrypt_the_key(client, superuser, workspace, settings):
    client.force_login(superuser)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the stored key cannot be decrypted now

    for url in every_page(workspace):
        assert client.get(url).status_code == 200, url


def test_saving_with_a_blank_key_keeps_the_stored_key(client, superuser, workspace):
    client.force_login(superuser)
    url = admin_url(Connection, "change", workspace.pk)
    before = stored_ciphertext(workspace.pk)
    page = client.get(url)
    assert "api_key" not in page.context["adminform"].form.initial  # nothing of the key is in the form
    data = changeform_data(page) | {"api_key": "", "name": "Renamed workspace"}

    response = client.post(url, data)

    assert response.status_code == 302
    saved = Connection.objects.get(pk=workspace.pk)
    assert saved.name == "Renamed workspace"
    assert stored_ciphertext(workspace.pk) == before
    assert saved.api_key == API_KEY


def test_saving_with_a_new_key_replaces_it(client, superuser, workspace):
    client.force_login(superuser)
    url = admin_url(Connection, "change", workspace.pk)
    data = changeform_data(client.get(url)) | {"api_key": "sk-live-brand-new-9876"}

    response = client.post(url, data)

    assert response.status_code == 302
    saved = Connection.objects.get(pk=workspace.pk)
    assert saved.api_key == "sk-live-brand-new-9876"
    assert saved.masked_api_key == "…9876"


def test_a_rejected_form_does_not_echo_the_key_back(client, superuser, workspace):
    client.force_login(superuser)
    url = admin_url(Connection, "change", workspace.pk)
    data = changeform_data(client.get(url)) | {"api_key": "sk-live-typed-secret-5555", "name": ""}

    response = client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert "sk-live-typed-secret" not in response.content.decode()


def test_a_marketer_creates_a_connection_with_its_key(client, marketer):
    client.force_login(marketer)
    data = {
        "name": "EU workspace",
        "site_id": "site-eu",
        "api_key": "sk-eu-created-1234",
        "region": "eu",
        "transport": "v2_batch",
        "rate_limit": "50",
        "identify_by": "customer_id",
        "erasure": "suppress",
    }

    response = client.post(admin_url(Connection, "add"), data)

    assert response.status_code == 302
    created = Connection.objects.get(name="EU workspace")
    assert created.api_key == "sk-eu-created-1234"
    assert created.region == "eu" and created.rate_limit == 50
    assert created.connection_key


def test_a_new_connection_needs_an_api_key(client, marketer):
    client.force_login(marketer)
    data = {"name": "No key", "site_id": "site", "api_key": "", "region": "us", "transport": "v1", "rate_limit": "1"}

    response = client.post(admin_url(Connection, "add"), data)

    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors
    assert not Connection.objects.filter(name="No key").exists()


def test_the_change_page_shows_the_connection_key_to_copy_and_the_state(client, marketer, workspace):
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", workspace.pk)).content.decode()

    assert workspace.connection_key in html
    assert "Active" in html


def test_resuming_a_faulted_connection(client, marketer, workspace):
    Connection.objects.filter(pk=workspace.pk).update(state=Connection.State.FAULTED)
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "changelist"), {"action": "resume_connections", "_selected_action": [workspace.pk]}
    )

    assert response.status_code == 302
    assert Connection.objects.get(pk=workspace.pk).state == Connection.State.ACTIVE


def test_deleting_a_connection_with_a_log_is_summarised_and_says_customerio_keeps_its_attributes(
    client, marketer, workspace
):
    client.force_login(marketer)
    url = admin_url(Connection, "delete", workspace.pk)

    confirmation = client.get(url)
    response = client.post(url, {"post": "yes"})

    assert "Customer.io keeps the attributes it already has" in confirmation.content.decode()
    assert dict(confirmation.context["model_count"])["forwarding log"] == 1
    assert response.status_code == 302
    assert not Connection.objects.filter(pk=workspace.pk).exists()


def test_help_texts_are_shown_as_text(client, marketer):
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "add")).content.decode()

    assert "In &lt;audience name&gt;" in html


def test_credentials_accepted_by_customerio_are_reported_with_the_region(
    client, marketer, standin, workspace_connection
):
    connection = workspace_connection("site-eu")
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "changelist"),
        {"action": "test_credentials", "_selected_action": [connection.pk]},
        follow=True,
    )

    html = response.content.decode()
    assert "Customer.io accepted the credentials; the workspace is in the EU region." in html
    assert_no_key_in_page(html, "sk-eu-7e3c1b5a9d")


def test_rejected_credentials_are_reported(client, marketer, standin):
    connection = ConnectionFactory(site_id="site-us", api_key="sk-wrong-key-0000")
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "changelist"),
        {"action": "test_credentials", "_selected_action": [connection.pk]},
        follow=True,
    )

    [message] = list(response.context["messages"])
    assert message.level_tag == "error"
    assert message.message.startswith(f"{connection.name}: ")
    assert_no_key_in_page(response.content.decode(), "sk-wrong-key-0000")


def assert_no_key_in_page(html: str, key: str) -> None:
    assert key not in html
    assert key[-5:] not in html
