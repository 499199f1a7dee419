"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Playwright's sync API runs an event loop in the test thread, and Django refuses ORM calls from a
thread with a running loop; the tests make such calls on purpose (set-up, checks), so the guard is
lifted here, for the browser tests only, never in settings. Playwright itself lives for this
package only (pytest-playwright would keep it, and its loop, for the whole session), so the tests
that run after these keep Django's guard, and their subprocesses do not inherit the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright

from connections.roles import ROLE_PERMISSIONS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"  # tests.support.factories.UserFactory's
# A time zone other than the server's (UTC), so the tests see dates shown in the browser's own.
BROWSER_TIME_ZONE = "America/New_York"


@pytest.fixture(scope="package", autouse=True)
def _allow_orm_beside_playwright() -> Iterator[None]:
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# pytest-playwright's own fixtures, package-scoped instead of session-scoped.


@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts) -> Iterator[Playwright]:  # type: ignore[no-untyped-def]
    with sync_playwright() as started:
        if _pw_api_request_contexts:
            _pw_api_request_contexts.instrument(started)
        yield started


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict, browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**kwargs) -> Browser:  # type: ignore[no-untyped-def]
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    started = launch_browser()
    yield started
    started.close()


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args() -> dict:
    return {
        "timezone_id": BROWSER_TIME_ZONE,
        "locale": "en-US",
        "viewport": {"width": 1366, "height": 900},
    }


@pytest.fixture(autouse=True)
def roles(transactional_db) -> None:  # type: ignore[no-untyped-def]
    """The role groups, as migration 0002 makes them.

    A transactional test empties every table when it ends and only content types and
    permissions come back (post_migrate), not the groups. Django's `serialized_rollback`
    would restore them, but once Playwright's sync API has started, the test thread sees a
    fresh database connection object without the serialized copy, so it cannot be relied on.
    """
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(Permission.objects.filter(content_type__app_label="connections", codename__in=codenames))


@pytest.fixture
def page(page: Page) -> Page:
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    return page


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    """`screenshot("step")` saves `<test name>-step.png`; `<test name>.png` is saved at the end, pass or fail."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(step: str = "") -> None:
        test = request.node.originalname  # without pytest-playwright's "[chromium]"
        name = f"{test}-{step}" if step else test
        page.wait_for_load_state("networkidle")  # icons and styles loaded, as a person would see the page
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    yield take
    take()


@pytest.fixture
def log_in(page: Page, live_server) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    def log_in_as(username: str) -> None:
        page.goto(f"{live_server.url}/admin/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#user-tools")).to_contain_text(username)

    return log_in_as
