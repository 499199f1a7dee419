"""A marketer opens a person's page in Chromium at 1366x800: what Customer.io last confirmed and what the next
update sends, per workspace (a 400 shown as a failure, not as delivered), audience names beside the ids, and the
Delete ("here only") and Erase buttons with their confirmations."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from cio_standin import Faults
from connections.models import Audience, Connection, Delivery, Profile
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url
from tests.support.workers import purge_broker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]
EU_KEY, _ = STANDIN_WORKSPACES["site-eu"]


def change(audiences: dict[int, bool]) -> None:
    person = ProfileInput(customer_id="ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
    apply_changes([ProfileChange(person, audiences)])


@pytest.fixture
def ada(standin, marketer) -> Profile:
    """Delivered to the US workspace, whose next send got a 400; a change waiting for the EU workspace."""
    purge_broker()
    us = Connection.objects.create(name="US workspace", site_id="site-us", api_key=US_KEY)
    eu = Connection.objects.create(
        name="EU workspace", site_id="site-eu", api_key=EU_KEY, region="eu", one_attribute_per_audience=True
    )
    newsletter = Audience.objects.create(audience_id=123, name="Newsletter")
    vip = Audience.objects.create(audience_id=456, name="VIP")
    for audience in (newsletter, vip):
        subscriptions.subscribe(audience, us)
    subscriptions.subscribe(vip, eu)
    change({123: True, 456: True})
    forwarding.forward_pending(us.pk)
    forwarding.forward_pending(eu.pk)
    assert standin.people("site-us")["ada"]["SegmentMembership"] == "'123','456'"
    change({456: False})  # left VIP
    standin.set_faults(Faults(share=1.0, statuses=[400]))
    forwarding.forward_pending(us.pk)  # refused; the EU workspace's change is not sent yet
    standin.clear_faults()
    return Profile.objects.get(customer_id="ada")


def test_a_person_page_shows_last_delivered_next_update_and_the_two_ways_to_remove_them(
    page: Page, live_server, ada, log_in, screenshot
):
    page.set_viewport_size({"width": 1366, "height": 800})
    failed = Delivery.objects.get(status=Delivery.Status.FAILED)
    log_in("marketer")
    page.goto(f"{live_server.url}{admin_url(Profile, 'change', ada.pk)}")

    us = page.locator(".cio-person-connection", has=page.get_by_role("heading", name="US workspace"))
    delivered, upcoming = us.locator(".cio-last-delivered"), us.locator(".cio-next-update")
    expect(delivered.locator("tr", has_text="SegmentMembership")).to_contain_text("'123','456'")
    expect(delivered.locator(".cio-audience-names")).to_have_text("123 = Newsletter, 456 = VIP")
    expect(delivered.locator(".cio-attempt")).to_contain_text("The latest attempt failed")
    expect(delivered.locator(".cio-attempt")).to_contain_text("(HTTP 400)")
    expect(delivered).to_contain_text("Customer.io did not receive that update")
    expect(upcoming).to_contain_text("Nothing pending, but the latest attempt did not reach Customer.io")
    next_segments = upcoming.locator("tr", has_text="SegmentMembership")
    expect(next_segments).to_contain_text("'123' (was '123','456')")
    expect(next_segments.locator(".cio-audience-names")).to_have_text("123 = Newsletter")
    eu = page.locator(".cio-person-connection", has=page.get_by_role("heading", name="EU workspace"))
    expect(eu.locator(".cio-last-delivered")).to_contain_text("In VIP true")
    expect(eu.locator(".cio-next-update")).to_contain_text("Pending: a change waiting since")
    expect(eu.locator(".cio-next-update tr.cio-changed")).to_contain_text("In VIP false (was true)")
    # Both columns side by side, neither cut at 1366 px.
    left, right = delivered.bounding_box(), upcoming.bounding_box()
    assert left and right and left["x"] + left["width"] <= right["x"] and right["x"] + right["width"] <= 1366
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    screenshot("panel")

    delivered.get_by_role("link", name="open it in the forwarding log").click()
    expect(page).to_have_url(f"{live_server.url}{admin_url(Delivery, 'change', failed.pk)}")
    page.go_back()

    delete = page.locator(".submit-row a", has_text="Delete here only")
    erase = page.locator(".submit-row a", has_text="Erase…")
    erase_url = reverse("admin:connections_profile_erase", args=[ada.pk])
    expect(erase).to_have_attribute("href", erase_url)
    expect(page.locator(".submit-row a", has_text="Delete")).to_have_count(1)
    red = "rgb(186, 33, 33)"  # the admin's delete-button red (--delete-button-bg)
    expect(erase).to_have_css("background-color", red)
    expect(delete).not_to_have_css("background-color", red)
    page.locator(".submit-row").scroll_into_view_if_needed()
    screenshot("buttons")

    delete.click()
    warning = page.locator(".cio-delete-here-only")
    expect(warning).to_contain_text("This deletes the person here only.")
    expect(warning).to_contain_text("Customer.io keeps the person and all their attributes: nothing is sent to it.")
    expect(warning.get_by_role("link", name="Erase…")).to_have_attribute("href", erase_url)
    screenshot("delete")
    page.go_back()

    erase.click()
    content = page.locator("#content")
    expect(content).to_contain_text("Erase this person? This cannot be undone.")
    expect(content).to_contain_text("US workspace: suppress")
    screenshot("erase")
    page.get_by_role("button", name="Yes, erase").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Erased 1 person.")
    assert not Profile.objects.filter(customer_id="ada").exists()
