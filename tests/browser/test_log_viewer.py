"""A log viewer reads, filters and searches the forwarding log and nothing else; an anonymous visitor is sent
to the login page; a marketer sees a faulted connection's error and resumes it (SPEC §4, §6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.models import Connection, Delivery, Forward
from connections.services.connection import transitions as connection_state
from tests.browser.conftest import BROWSER_TIME_ZONE
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


LONG_ID = "cust-3f2b9c1e-8a47-4d2b-9c3e-5f6a7b8c9d0e-eu-marketing"
LONG_ERROR = (
    "Customer.io rejected the request (HTTP 400): attribute 'In Spring newsletter subscribers' is longer "
    "than 1000 bytes, and 'first_name' must be a string"
)


def logged_at(connection, profile, at: datetime, **fields) -> Delivery:  # type: ignore[no-untyped-def]
    fields.setdefault("reason", Forward.Reason.MEMBERSHIP)
    delivery = make_delivery(connection, profile, **fields)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=at, finished_at=at + timedelta(seconds=1))
    return delivery


@pytest.fixture
def busy_log(db):
    """A log with long values in every column, a failure retried with success, and one not retried."""
    eu = Connection.objects.create(
        name="EU marketing workspace (newsletters and onboarding)", site_id="site-eu", api_key=EU_KEY, region="eu"
    )
    long = ProfileFactory(customer_id=LONG_ID, email="long@example.com")
    ada = ProfileFactory(customer_id="ada", email="Ada.Lovelace@example.com")
    grace = ProfileFactory(customer_id="grace", email="grace@example.com")
    start = datetime(2026, 12, 4, 19, 3, 27, tzinfo=UTC)  # 14:03:27 in New York
    failed = logged_at(eu, ada, start, status=Delivery.Status.FAILED, http_status=400, error=LONG_ERROR)
    retried = logged_at(eu, ada, start + timedelta(seconds=105), reason=Forward.Reason.RETRY)
    lonely = logged_at(
        eu, grace, start + timedelta(seconds=120), status=Delivery.Status.FAILED, http_status=400, error=LONG_ERROR
    )
    for seconds, fields in enumerate(
        [
            {
                "status": Delivery.Status.RETRYING,
                "http_status": 503,
                "error": "Customer.io is unavailable. Will retry.",
            },
            {"action": "segment_add", "segment_id": 1234567, "reason": Forward.Reason.ACTIVATION},
            {"action": "suppress", "reason": "", "status": Delivery.Status.SKIPPED, "http_status": None},
            {"reason": Forward.Reason.ACTIVATION, "status": Delivery.Status.CANCELLED, "http_status": None},
        ]
    ):
        logged_at(eu, long, start + timedelta(seconds=130 + seconds), **fields)
    return failed, retried, lonely


def assert_nothing_is_cut(page: Page) -> None:
    """No horizontal scrolling, every column in the window, and no request cell wider than it shows."""
    sizes = page.evaluate(
        """() => {
            const table = document.querySelector('#result_list');
            const results = document.querySelector('#changelist-form .results');
            const cells = [...document.querySelectorAll('#result_list td.field-what')];
            const headers = [...document.querySelectorAll('#result_list thead th')];
            return {
                viewport: window.innerWidth,
                page: document.documentElement.scrollWidth,
                table: table.scrollWidth,
                results: [results.scrollWidth, results.clientWidth],
                cutRequests: cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent),
                lastHeaderRight: Math.max(...headers.map(h => h.getBoundingClientRect().right)),
            };
        }"""
    )
    assert sizes["page"] <= sizes["viewport"], sizes
    assert sizes["table"] <= sizes["viewport"], sizes
    assert sizes["results"][0] <= sizes["results"][1], sizes
    assert sizes["cutRequests"] == [], sizes
    assert sizes["lastHeaderRight"] <= sizes["viewport"], sizes


def test_the_log_fits_a_laptop_links_retries_searches_and_retries_from_a_rows_page(
    page: Page, live_server, marketer, busy_log, log_in, screenshot
):
    _failed, retried, lonely = busy_log
    page.set_viewport_size({"width": 1366, "height": 800})
    log_in("marketer")
    goto(page, live_server, admin_url(Delivery, "changelist"))

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(7)
    headers = page.locator("#result_list thead th").all_inner_texts()
    assert [h.strip().lower() for h in headers[1:]] == [
        "time",
        "connection",
        "customer id",
        "status",
        "http",
        "request",
        "error",
    ]
    assert_nothing_is_cut(page)
    zone = page.locator(".cio-zone")
    expect(zone).to_contain_text(f"Times are in {BROWSER_TIME_ZONE}.")
    expect(zone.get_by_role("link", name="batch requests")).to_be_visible()  # where whole-audience work is
    expect(page.locator("#changelist .paginator")).to_contain_text("7 deliveries")
    failed_row = rows.filter(has=page.get_by_role("link", name="2026-12-04 14:03:27", exact=True))
    expect(failed_row.locator("td.field-error_short")).to_contain_text("Customer.io rejected the request (HTTP 400)")
    expect(page.locator("td.field-what").filter(has_text="suppress the person (erasure)")).to_have_count(1)
    screenshot("list")

    # The failed row says when it was retried with success, and links to that attempt.
    failed_row.get_by_role("link", name="Retried: delivered at 14:05:13").click()
    expect(page).to_have_url(re.compile(rf"/delivery/{retried.pk}/change/$"))
    attempts = page.locator(".cio-attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("2026-12-04 14:05:12 (this one)")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)  # it got through
    screenshot("retried")

    # Search: a customer ID's beginning, then an email in another case.
    goto(page, live_server, admin_url(Delivery, "changelist"))
    expect(page.locator("#searchbar_helptext")).to_contain_text(
        "A customer ID or its beginning, or a person's exact email address (any case)."
    )
    page.locator("#searchbar").fill("cust-3f2b")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(4)
    expect(page.locator("td.field-customer_id").first).to_have_text(LONG_ID)
    assert_nothing_is_cut(page)
    screenshot("prefix")
    page.locator("#searchbar").fill("ada.lovelace@EXAMPLE.com")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2)
    expect(page.locator("td.field-customer_id")).to_have_text(["ada", "ada"])
    screenshot("email")

    # Retry from the page of a failed delivery that was not retried yet.
    goto(page, live_server, admin_url(Delivery, "change", lonely.pk))
    expect(page.locator(".field-error_text pre")).to_have_text(LONG_ERROR)  # the whole error
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".messagelist .success")).to_have_text(
        "Queued 1 person to be sent again with their current state."
    )
    expect(page).to_have_url(re.compile(rf"/delivery/{lonely.pk}/change/$"))
    forward = Forward.objects.get()
    assert (forward.profile.customer_id, forward.reason) == ("grace", Forward.Reason.RETRY)
    screenshot("retry")
