"""The overview home, a profile's "This person in Customer.io" panel and an audience page in Chromium, as a marketer
sees them (screenshots under test-artifacts/screenshots/)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.models import Audience, Connection, Forward, ImportRun, Profile
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.resync import runs as resync
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url, make_delivery, make_forward
from tests.support.factories import ProfileFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]


@pytest.fixture
def world(standin, marketer):
    """Two workspaces, one faulted with a backlog; an audience forwarded to the healthy one; a person sent there."""
    us = Connection.objects.create(
        name="US workspace", site_id="site-us", api_key=US_KEY, one_attribute_per_audience=True
    )
    eu = Connection.objects.create(
        name="EU workspace", site_id="site-eu", api_key="sk-wrong-0000", region="eu",
        state=Connection.State.FAULTED, last_error="Customer.io answered 401: Unauthorized",
        last_error_at=timezone.now() - timedelta(hours=2),
    )
    buyers = Audience.objects.create(audience_id=123, name="Loyal buyers")
    churned = Audience.objects.create(audience_id=456, name="Churned")
    subscriptions.subscribe(buyers, us)
    subscriptions.subscribe(churned, us)
    apply_changes([
        ProfileChange(ProfileInput(customer_id=f"c{i}", email=f"c{i}@example.com"), {123: i % 4 != 0})
        for i in range(40)
    ])
    apply_changes([
        ProfileChange(ProfileInput(customer_id="ada", email="ada@example.com", first_name="Ada", last_name="Lovelace"),
                      {123: True, 456: False})
    ])
    forwarding.forward_pending(us.pk)
    for profile in ProfileFactory.create_batch(25):
        make_forward(eu, profile)
    Forward.objects.filter(connection=eu).update(created_at=timezone.now() - timedelta(hours=2))
    for _ in range(3):
        make_delivery(eu, status="failed", http_status=401, error="Customer.io answered 401: Unauthorized")
    resync.queue_all(resync.scope_for(us))
    forwarding.forward_pending(us.pk)
    ImportRun.objects.create(audience=buyers, source="buyers-2026-05.csv", lines_total=41, lines_done=41, status="done")
    return {"us": us, "eu": eu, "buyers": buyers}


def test_the_home_page_tells_a_marketer_what_needs_attention(page: Page, live_server, world, log_in, screenshot):
    log_in("marketer")
    page.goto(f"{live_server.url}/admin/")

    attention = page.locator(".cio-attention li").first
    expect(attention).to_contain_text("EU workspace is faulted")
    row = page.locator(".cio-table tbody tr", has_text="EU workspace")
    expect(row).to_contain_text("Faulted")
    expect(row.locator("td").nth(1)).to_have_text("25")
    expect(page.locator(".cio-table tbody tr", has_text="US workspace")).to_contain_text("Active")
    expect(page.locator(".cio-activity")).to_contain_text("Resync of US workspace")
    expect(page.get_by_role("heading", name="Everything in the admin")).to_be_visible()
    screenshot("overview")

    attention.get_by_role("link", name="Open the connection").click()
    expect(page.locator(".cio-health")).to_contain_text("Faulted")


def test_the_profile_page_shows_what_customerio_has(page: Page, live_server, world, log_in, screenshot):
    ada = Profile.objects.get(customer_id="ada")
    log_in("marketer")
    page.goto(f"{live_server.url}{admin_url(Profile, 'change', ada.pk)}")

    panel = page.locator(".cio-panel")
    expect(panel).to_contain_text("This person in Customer.io")
    delivered = panel.locator(".cio-last-delivered")
    expect(delivered.locator("tr", has_text="In Loyal buyers")).to_contain_text("true")
    expect(delivered.locator("tr", has_text="In Churned")).to_contain_text("false")
    expect(delivered).to_contain_text("Succeeded (HTTP 200)")
    expect(panel.locator(".cio-next-update")).to_contain_text("Nothing pending: up to date.")
    screenshot("panel")

    panel.locator("table.cio-table a").first.click()
    expect(page.locator("h2").first).to_contain_text("ada")


def test_the_audience_page_shows_members_and_where_they_go(page: Page, live_server, world, log_in, screenshot):
    log_in("marketer")
    page.goto(f"{live_server.url}{admin_url(Audience, 'changelist')}")
    expect(page.locator("#result_list tr", has_text="Loyal buyers")).to_contain_text("31")
    screenshot("list")

    page.get_by_role("link", name="Loyal buyers").click()
    panel = page.locator(".cio-panel")
    expect(panel.locator(".cio-facts")).to_contain_text("31")
    expect(panel.locator(".cio-facts")).to_contain_text("10")
    expect(panel.locator("tr", has_text="US workspace")).to_contain_text("Active: forwarded")
    expect(panel.locator("tr", has_text="US workspace")).to_contain_text("Succeeded")
    screenshot("page")
