"""A marketer erases a person from the admin: the confirmation page says what happens per connection, a real
worker suppresses the person in the stand-in, and the erasure record shows the outcome (SPEC section 12)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from connections.models import Connection, ErasureCall, Profile
from tests.conftest import STANDIN_WORKSPACES
from tests.support.erasure import CUSTOMER_ID, EMAIL, PERSONAL, forwarded_person, tables_holding
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

US_KEY, _ = STANDIN_WORKSPACES["site-us"]
EU_KEY, _ = STANDIN_WORKSPACES["site-eu"]


def test_a_marketer_erases_a_person_and_sees_what_customerio_was_told(
    page: Page, live_server, marketer, standin, log_in, screenshot
):
    purge_broker()
    main = Connection.objects.create(name="Main workspace", site_id="site-us", api_key=US_KEY)
    eu = Connection.objects.create(
        name="EU newsletter", site_id="site-eu", api_key=EU_KEY, region="eu", erasure="delete", identify_by="email"
    )
    Connection.objects.create(name="Archive", site_id="site-archive", api_key="sk-archive-0000", erasure="none")
    forwarded_person(main)
    forwarded_person(eu)
    assert EMAIL in str(standin.people("site-eu"))
    log_in("marketer")

    page.goto(f"{live_server.url}/admin/connections/profile/")
    row = page.locator("#result_list tbody tr").filter(has_text=CUSTOMER_ID)
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Erase selected people…")
    page.get_by_role("button", name="Go").click()

    content = page.locator("#content")
    expect(content).to_contain_text("Erase this person? This cannot be undone.")
    expect(content).to_contain_text("Main workspace: suppress (delete the person and keep them from being re-added)")
    expect(content).to_contain_text("EU newsletter: delete the person in Customer.io, identified by email")
    expect(content).to_contain_text("Archive: nothing sent (the connection is set to erase here only")
    screenshot("confirm")

    with running_workers(standin.url):
        page.get_by_role("button", name="Yes, erase").click()
        expect(page.locator(".messagelist .success")).to_contain_text("Erased 1 person.")
        wait_until(
            lambda: not ErasureCall.objects.filter(status__in=["pending", "retrying"]).exists(),
            message="the workers to send both calls",
        )
    screenshot("erased")

    assert not Profile.objects.exists()
    assert CUSTOMER_ID not in standin.people("site-us")
    assert EMAIL not in str(standin.people("site-eu"))

    page.goto(f"{live_server.url}/admin/connections/erasurerecord/")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Admin")
    row.locator("th a").click()
    calls = page.locator(".inline-group")
    expect(calls).to_contain_text("Main workspace")
    expect(calls).to_contain_text("Done")
    expect(calls).to_contain_text("Nothing to send")
    expect(page.locator("#content")).not_to_contain_text(CUSTOMER_ID)
    screenshot("record")
    assert tables_holding(*PERSONAL) == {}


def test_an_erasure_behind_a_backlog_is_queued_shown_waiting_and_carried_out_by_a_worker(
    page: Page, live_server, marketer, standin, log_in, screenshot, settings
):
    """ERASURE_WAIT_SECONDS shortened to 0, so that the backlog outlasts it (the default: the tests of
    tests/firehose/test_apply_in_worker.py that erase behind a short backlog)."""
    from connections.firehose import inbox, ingest
    from connections.firehose.messages import parse_message
    from tests.support.firehose import membership_request, user_profile

    purge_broker()
    settings.FIREHOSE_APPLY, settings.ERASURE_WAIT_SECONDS = "worker", 0
    main = Connection.objects.create(name="Main workspace", site_id="site-us", api_key=US_KEY, connection_key="ck-1")
    forwarded_person(main)
    for n in range(3 * inbox.BATCH_SIZE):  # accepted from mParticle while no worker ran
        message = membership_request(user_profile(f"someone-{n}"), connection_key="ck-1")
        ingest.accept(parse_message(message), json.dumps(message))
    log_in("marketer")

    page.goto(f"{live_server.url}/admin/connections/profile/")
    page.locator("#result_list tbody tr").filter(has_text=CUSTOMER_ID).locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Erase selected people…")
    page.get_by_role("button", name="Go").click()
    page.get_by_role("button", name="Yes, erase").click()

    expect(page.locator(".messagelist .warning")).to_contain_text("1 person will be erased by a worker right after")
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#cio-erasures-waiting")).to_contain_text("1 erasure has waited under a minute for a worker")
    screenshot("waiting")

    with running_workers(standin.url):
        wait_until(
            lambda: (
                not ErasureCall.objects.filter(status__in=["pending", "retrying"]).exists()
                and ErasureCall.objects.exists()
            ),
            message="a worker to erase the person and call Customer.io",
        )
    assert not Profile.objects.filter(customer_id=CUSTOMER_ID).exists()
    assert CUSTOMER_ID not in standin.people("site-us")
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#content")).not_to_contain_text("erasure has waited")
    assert tables_holding(*PERSONAL) == {}
