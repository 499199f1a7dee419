"""A marketer in Chromium at 1366x800: a connection form with mistakes answers in plain words beside each
field and asks for the key again; then Resync asks first, with the people and requests it will send,
and Cancel changes nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from connections.models import Connection, ResyncRun
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url
from tests.support.factories import AudienceFactory, MembershipFactory, SubscriptionFactory
from tests.support.workers import purge_broker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]


def test_form_errors_are_plain_and_resync_asks_first(page: Page, live_server, marketer, log_in, screenshot):
    purge_broker()
    page.set_viewport_size({"width": 1366, "height": 800})
    audience = AudienceFactory(audience_id=123, name="New Users")
    MembershipFactory.create_batch(3, audience=audience)
    log_in("marketer")

    # Mistakes: a Site ID with a space, a rate limit of 0.
    page.goto(f"{live_server.url}{admin_url(Connection, 'add')}")
    page.locator("#id_name").fill("US workspace")
    page.locator("#id_site_id").fill("site us")
    page.locator("#id_api_key").fill(US_KEY)
    page.locator("#id_rate_limit").fill("0")
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".field-site_id .errorlist")).to_contain_text(
        "A Site ID has only letters, digits, dots, dashes and underscores, with no spaces"
    )
    expect(page.locator(".field-rate_limit .errorlist")).to_have_text(
        "Rate limit must be at least 1 request per second."
    )
    expect(page.locator("#id_api_key_notice")).to_have_text(
        "Re-enter the API key: for safety it is not sent back to the browser."
    )
    expect(page.locator("#id_api_key")).to_have_value("")
    html = page.content()
    assert US_KEY not in html and "Constraint" not in html
    page.locator(".field-rate_limit").scroll_into_view_if_needed()
    screenshot("form-errors")

    # Corrected, with the key typed again: saved.
    page.locator("#id_site_id").fill("  site-us ")
    page.locator("#id_rate_limit").fill("100")
    page.locator("#id_api_key").fill(US_KEY)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    connection = Connection.objects.get()
    assert (connection.site_id, connection.rate_limit) == ("site-us", 100)
    SubscriptionFactory(connection=connection, audience=audience)
    page.reload()

    # Resync asks first; "No, take me back" changes nothing.
    page.get_by_role("button", name="Resync").click()
    content = page.locator("#content")
    expect(content).to_contain_text("Resync this connection?")
    expect(content).to_contain_text("People to send: 3. Requests to Customer.io: about 1.")
    expect(page.locator("table.cio-send-estimates tbody tr")).to_contain_text("v2 batches of up to 1,000 people")
    screenshot("resync-confirmation")
    page.get_by_role("link", name="No, take me back").click()
    expect(page).to_have_url(f"{live_server.url}{admin_url(Connection, 'change', connection.pk)}")
    assert not ResyncRun.objects.exists()

    # Confirmed: it starts.
    page.get_by_role("button", name="Resync").click()
    page.get_by_role("button", name="Yes, resync").click()
    expect(page.locator(".messagelist .success")).to_contain_text(
        "US workspace: resync started. 3 profiles are being queued"
    )
    assert ResyncRun.objects.get().total == 3
    screenshot("resync-started")
    purge_broker()
