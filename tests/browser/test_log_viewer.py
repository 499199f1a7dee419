"""A log viewer reads, filters and searches the forwarding log and nothing else; an anonymous visitor is sent
to the login page; a marketer sees a faulted connection's error and resumes it (SPEC §4, §6)."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.models import Connection, Delivery, Forward
from connections.services.connection import transitions as connection_state
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url, make_delivery
from tests.support.factories import ProfileFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]
EU_KEY, _ = STANDIN_WORKSPACES["site-eu"]


def goto(page: Page, live_server, path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}{path}")


@pytest.fixture
def logged(db):
    """Two connections with a few deliveries each."""
    us = Connection.objects.create(name="US workspace", site_id="site-us", api_key=US_KEY)
    eu = Connection.objects.create(name="EU workspace", site_id="site-eu", api_key=EU_KEY, region="eu")
    ada, grace = ProfileFactory(customer_id="ada"), ProfileFactory(customer_id="grace")
    make_delivery(us, ada, attributes={"SegmentMembership": "'123'"}, reason="membership", transport="v2_batch")
    make_delivery(us, grace, attributes={"SegmentMembership": ""}, reason="membership", transport="v2_batch")
    make_delivery(
        eu,
        ada,
        status=Delivery.Status.FAILED,
        http_status=400,
        attributes={"In New Users": "true"},
        error="Customer.io rejected the request (HTTP 400): attribute value too long",
        reason="membership",
        transport="v1",
    )
    return us, eu


def test_a_log_viewer_reads_filters_and_searches_the_log_but_nothing_else(
    page: Page, live_server, log_viewer, logged, log_in, screenshot
):
    us, _eu = logged
    log_in("logviewer")
    expect(page.locator("#content-main")).to_contain_text("Forwarding log")
    # The overview names the connections and their state (the log names them too), but a log
    # viewer gets no link to any connection page, nor to the connections list.
    expect(page.locator('#content-main a[href*="/connections/connection/"]')).to_have_count(0)
    expect(page.locator("#content-main")).not_to_contain_text("Add the Customer.io workspace")
    screenshot("index")

    page.get_by_role("link", name="Forwarding log").first.click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator("#changelist-filter")).to_be_visible()

    # Filter by connection, then by outcome.
    page.locator("#changelist-filter").get_by_role("link", name="EU workspace").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("400")
    screenshot("filtered")
    page.get_by_role("link", name="Clear all filters").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    # Search by customer ID, open the row: exactly what was sent, and Customer.io's answer.
    page.locator("#searchbar").fill("ada")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.locator("#result_list tbody tr").filter(has_text="EU workspace").locator("th a").click()
    expect(page.locator(".field-attributes_sent pre")).to_contain_text('"In New Users": "true"')
    expect(page.locator(".field-error_text")).to_contain_text("attribute value too long")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)  # read-only
    screenshot("delivery")

    # No connection page, no key.
    response = page.goto(f"{live_server.url}{admin_url(Connection, 'change', us.pk)}")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Permission denied")
    screenshot("forbidden")
    response = page.goto(f"{live_server.url}{admin_url(Connection, 'changelist')}")
    assert response is not None and response.status == 403
    for url in (admin_url(Delivery, "changelist"), "/admin/"):
        goto(page, live_server, url)
        html = page.content()
        assert US_KEY not in html and EU_KEY not in html and US_KEY[-5:] not in html and "gAAAA" not in html


def test_an_anonymous_visitor_is_sent_to_the_login_page(page: Page, live_server, logged, screenshot):
    log = admin_url(Delivery, "changelist")
    goto(page, live_server, log)

    expect(page).to_have_url(re.compile(r"/admin/login/\?next=" + re.escape(log) + "$"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert "US workspace" not in page.content()


def test_a_faulted_connection_shows_its_error_and_resumes(
    page: Page, live_server, marketer, standin, log_in, screenshot
):
    purge_broker()
    us = Connection.objects.create(name="US workspace", site_id="site-us", api_key=US_KEY)
    profile = ProfileFactory(customer_id="waiting", email="waiting@example.com", first_name="", last_name="")
    Forward.objects.create(connection=us, profile=profile, reason=Forward.Reason.RETRY, due_at=timezone.now())
    connection_state.fault(us, "Customer.io rejected the Site ID / API key (HTTP 401): Unauthorized request")
    log_in("marketer")

    goto(page, live_server, admin_url(Connection, "changelist"))
    row = page.locator("#result_list tbody tr").filter(has_text="US workspace")
    expect(row.locator(".cio-badge")).to_have_text("Faulted")
    screenshot("list")

    row.get_by_role("link", name="US workspace").click()
    expect(page.locator(".cio-health .errornote")).to_contain_text("Faulted since")
    expect(page.locator(".cio-health .errornote")).to_contain_text("(HTTP 401): Unauthorized request")
    expect(page.locator(".cio-health")).to_contain_text("Backlog")
    screenshot("faulted")

    with running_workers(standin.url):
        page.get_by_role("button", name="Resume").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Resumed US workspace: its waiting forwards are being sent."
        )
        # Resumed without a check: sending, and verified by the first delivery Customer.io takes.
        expect(page.locator(".cio-health .cio-badge")).to_have_text(re.compile("^(Not verified|Active)$"))
        expect(page.get_by_role("button", name="Resume")).to_have_count(0)
        wait_until(lambda: "waiting" in standin.people("site-us"), message="the waiting forward to be sent")
        wait_until(lambda: not Forward.objects.exists(), message="the outbox to empty")

    page.reload()
    expect(page.locator(".cio-health")).to_contain_text("1 succeeded, 0 failed")  # the chart's bar title
    expect(page.locator(".cio-health .cio-badge")).to_have_text("Active")
    assert Connection.objects.get(pk=us.pk).state == Connection.State.ACTIVE
