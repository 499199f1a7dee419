"""A marketer in Chromium: a connection with an App API key, then a Customer.io manual segment created for a
subscription from the admin; the segment's id is stored and the segment exists in the stand-in (SPEC §11)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from connections.models import Audience, Connection, Delivery, Subscription
from connections.services.outbox import wakeup
from tests.conftest import STANDIN_APP_KEYS, STANDIN_WORKSPACES
from tests.support.admin import admin_url
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TRACK_KEY, _ = STANDIN_WORKSPACES["site-us"]
APP_KEY = STANDIN_APP_KEYS["site-us"]


def assert_no_key(page: Page) -> None:
    html = page.content()
    for key in (TRACK_KEY, APP_KEY):
        assert key not in html
        assert key[-5:] not in html  # at most the last four characters are ever shown
    assert "gAAAA" not in html  # nor a ciphertext


def test_a_marketer_creates_a_manual_segment_for_a_subscription(
    page: Page, live_server, marketer, standin, log_in, screenshot
):
    purge_broker()  # subscribing queues a backfill task; no worker runs here
    audience = AudienceFactory(audience_id=123, name="New Users")
    members = {f"member-{n}" for n in range(3)}
    for customer_id in members:
        MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=customer_id))
    log_in("marketer")

    # A connection with its Track API key and an App API key: both typed once, never shown again.
    page.goto(f"{live_server.url}{admin_url(Connection, 'add')}")
    page.locator("#id_name").fill("US workspace")
    page.locator("#id_site_id").fill("site-us")
    page.locator("#id_api_key").fill(TRACK_KEY)
    page.locator("#id_app_api_key").fill(APP_KEY)
    page.locator("#id_region").select_option("us")
    screenshot("add-form")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success").first).to_contain_text("was added successfully")
    expect(page.locator("#id_app_api_key")).to_have_value("")
    expect(page.locator(".field-app_api_key .help")).to_contain_text(f"ending …{APP_KEY[-4:]}")
    assert_no_key(page)

    # Test credentials checks both keys.
    page.get_by_role("button", name="Test credentials").click()
    messages = page.locator(".messagelist")
    expect(messages).to_contain_text("Customer.io accepted the credentials; the workspace is in the US region.")
    expect(messages).to_contain_text("US workspace: Customer.io accepted the App API key.")
    screenshot("credentials")
    assert_no_key(page)

    # Subscribe the audience on its page.
    page.goto(f"{live_server.url}{admin_url(Audience, 'change', Audience.objects.get().pk)}")
    page.get_by_role("button", name="Add another Subscription").click()
    page.locator("#id_subscriptions-0-connection").select_option(label="US workspace")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success").first).to_contain_text("was changed successfully")

    # Create the manual segment from the subscriptions list.
    page.goto(f"{live_server.url}{admin_url(Subscription, 'changelist')}")
    page.locator("#result_list tbody tr").filter(has_text="New Users").locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Create a manual segment in Customer.io…")
    page.get_by_role("button", name="Go").click()
    # It asks first, with what it will send: the segment, one batch of the 3 members, one request adding them.
    expect(page.locator("#content")).to_contain_text("People to send: 3. Requests to Customer.io: about 3.")
    assert standin.segments("site-us") == []
    screenshot("segment-confirmation")
    page.get_by_role("button", name="Yes, create").click()

    [segment] = standin.segments("site-us")
    expect(page.locator(".messagelist .success")).to_contain_text(
        f"Created the manual segment “New Users” (ID {segment['id']}) in US workspace's Customer.io workspace"
    )
    row = page.locator("#result_list tbody tr").filter(has_text="New Users")
    expect(row.locator(".field-manual_segment")).to_have_text(str(segment["id"]))
    screenshot("segment-created")
    assert (segment["name"], segment["type"]) == ("New Users", "manual")
    assert Subscription.objects.get().customerio_segment_id == segment["id"]

    # The subscription's page shows the id, editable.
    row.locator("th a").click()
    expect(page.locator("#id_customerio_segment_id")).to_have_value(str(segment["id"]))
    screenshot("subscription")
    assert_no_key(page)

    # A worker sends what was queued (the subscription's backfill, then the segment's): every
    # member is identified and added to the new segment.
    purge_broker()
    with running_workers(standin.url):
        wakeup.forward_now(Connection.objects.get().pk)
        wait_until(
            lambda: standin.segment_members("site-us", segment["id"]) == members, message="the members in the segment"
        )
    assert set(standin.people("site-us")) == members
    page.goto(f"{live_server.url}{admin_url(Delivery, 'changelist')}")
    expect(page.locator("#result_list")).to_contain_text("member-0")
    screenshot("segment-log")
    purge_broker()
