"""A marketer in Chromium: creates a connection, tests its credentials, subscribes an audience, watches the
forwarding log; then deactivates the subscription and sees that nothing more is sent (SPEC §3, §6)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from connections.models import Audience, Connection, Delivery, Forward, Subscription
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]
EU_KEY, _ = STANDIN_WORKSPACES["site-eu"]
TYPO_KEY = "sk-us-4d2f9a8b1X"  # one character off


def goto(page: Page, live_server, path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}{path}")


def assert_no_key(page: Page, *keys: str) -> None:
    html = page.content()
    for key in keys:
        assert key not in html
        assert key[-5:] not in html  # at most the last four characters are ever shown
    assert "gAAAA" not in html  # nor the ciphertext


def test_a_marketer_sets_up_a_connection_and_sees_what_is_sent(
    page: Page, live_server, marketer, standin, log_in, screenshot
):
    purge_broker()
    AudienceFactory(audience_id=123, name="New Users")
    with running_workers(standin.url):
        log_in("marketer")

        # Create the connection, with a typo in the key: typed once, never shown again.
        goto(page, live_server, admin_url(Connection, "add"))
        page.locator("#id_name").fill("US workspace")
        page.locator("#id_site_id").fill("site-us")
        page.locator("#id_api_key").fill(TYPO_KEY)
        page.locator("#id_region").select_option("us")
        screenshot("add-form")
        page.get_by_role("button", name="Save and continue editing").click()
        expect(page.locator(".messagelist .success").first).to_contain_text("was added successfully")
        expect(page.locator("#id_api_key")).to_have_value("")
        # Checked at save: Customer.io rejects it, and the connection is never shown as Active.
        expect(page.locator(".messagelist .error")).to_contain_text("rejected the Site ID / API key (HTTP 401)")
        expect(page.locator(".cio-health .cio-credentials")).to_contain_text("Rejected by Customer.io")
        assert_no_key(page, TYPO_KEY)

        # Test credentials says the same, and what to do.
        page.get_by_role("button", name="Test credentials").click()
        expect(page.locator(".messagelist .error")).to_contain_text("rejected the Site ID / API key (HTTP 401)")
        expect(page.locator(".messagelist .error")).to_contain_text("enter the Track API key again")
        screenshot("rejected")
        assert_no_key(page, TYPO_KEY)

        # Fixed: the new key replaces the old one, and Customer.io accepts it.
        page.locator("#id_api_key").fill(US_KEY)
        page.get_by_role("button", name="Save and continue editing").click()
        expect(page.locator(".messagelist .success").first).to_contain_text("was changed successfully")
        page.get_by_role("button", name="Test credentials").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Customer.io accepted the credentials; the workspace is in the US region."
        )
        expect(page.locator(".cio-health")).to_contain_text("No deliveries in the last 48 hours.")
        screenshot("accepted")
        assert_no_key(page, TYPO_KEY, US_KEY)
        goto(page, live_server, admin_url(Connection, "changelist"))
        expect(page.locator("#result_list")).to_contain_text("…8b1c")
        assert_no_key(page, US_KEY)

        # Subscribe the audience to it, on the audience's page.
        goto(page, live_server, admin_url(Audience, "change", Audience.objects.get().pk))
        page.get_by_role("button", name="Add another Subscription").click()
        page.locator("#id_subscriptions-0-connection").select_option(label="US workspace")
        page.get_by_role("button", name="Save and continue editing").click()
        expect(page.locator(".messagelist .success").first).to_contain_text("was changed successfully")
        expect(page.locator("#subscriptions-group")).to_contain_text("Active")
        screenshot("subscribed")

        # A membership change reaches Customer.io through the worker...
        apply_changes(
            [ProfileChange(ProfileInput(customer_id="ada", email="ada@example.com", first_name="Ada"), {123: True})]
        )
        wait_until(lambda: "ada" in standin.people("site-us"), message="ada to reach the stand-in")
        wait_until(lambda: Delivery.objects.filter(status="succeeded").exists(), message="the delivery to be logged")

    # ... and the log shows it, with exactly the attributes Customer.io received.
    goto(page, live_server, admin_url(Delivery, "changelist"))
    row = page.locator("#result_list tbody tr").filter(has_text="ada")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text("US workspace")
    row.locator("th a").click()
    sent = json.loads(page.locator(".field-attributes_sent pre").inner_text())
    assert sent == standin.people("site-us")["ada"]
    assert sent == {"email": "ada@example.com", "first_name": "Ada", "SegmentMembership": "'123'"}
    assert_no_key(page, US_KEY)


def test_a_deactivated_subscription_sends_nothing_more(page: Page, live_server, marketer, standin, log_in, screenshot):
    purge_broker()
    us = Connection.objects.create(name="US workspace", site_id="site-us", api_key=US_KEY, rate_limit=1000)
    eu = Connection.objects.create(name="EU workspace", site_id="site-eu", api_key=EU_KEY, region="eu")
    new_users = AudienceFactory(audience_id=123, name="New Users")
    subscriptions.subscribe(new_users, us)
    subscriptions.subscribe(AudienceFactory(audience_id=456, name="Sentinel"), eu)
    with running_workers(standin.url):
        apply_changes([ProfileChange(ProfileInput(customer_id="ada"), {123: True})])
        wait_until(lambda: Delivery.objects.filter(connection=us, status="succeeded").exists(), message="ada sent")
        log_in("marketer")

        subscription = Subscription.objects.get(connection=us)
        goto(page, live_server, admin_url(Subscription, "change", subscription.pk))
        page.get_by_role("button", name="Deactivate…").click()
        expect(page.locator("#content")).to_contain_text(
            "Customer.io keeps the attributes it already has: nothing is sent and nothing is cleared."
        )
        screenshot("confirmation")
        page.get_by_role("button", name="Yes, deactivate").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Deactivated 1 subscription. Nothing was sent: Customer.io keeps its attributes."
        )
        expect(page.locator(".field-status")).to_contain_text("Inactive")
        screenshot("deactivated")

        us_deliveries = Delivery.objects.filter(connection=us).count()
        us_requests = len(standin.requests("site-us"))
        apply_changes(
            [
                ProfileChange(ProfileInput(customer_id="ada"), {123: False}),
                ProfileChange(ProfileInput(customer_id="grace"), {123: True}),
                ProfileChange(ProfileInput(customer_id="sentinel"), {456: True}),  # the other connection's
            ]
        )
        # Once the other connection's change is through, the worker has had every chance to send.
        wait_until(lambda: "sentinel" in standin.people("site-eu"), message="the sentinel to reach the stand-in")

    assert not Forward.objects.filter(connection=us).exists()
    assert Delivery.objects.filter(connection=us).count() == us_deliveries
    assert len(standin.requests("site-us")) == us_requests
    assert standin.people("site-us") == {"ada": {"SegmentMembership": "'123'"}}  # kept as it was

    goto(page, live_server, f"{admin_url(Delivery, 'changelist')}?connection__id__exact={us.pk}")
    expect(page.locator("#result_list tbody tr")).to_have_count(us_deliveries)
    expect(page.locator("#result_list")).not_to_contain_text("grace")
