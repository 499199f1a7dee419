"""Guessing a password through the real login form ends on the lockout page, which says when to try again."""

from __future__ import annotations

import re
import time

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD
from tests.support.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def submit_login(page: Page, username: str, password: str, code: str = "") -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Log in").click()


def test_five_wrong_passwords_end_on_the_lockout_page_and_the_right_one_is_refused(page: Page, live_server, screenshot):
    UserFactory(username="ada")
    page.set_viewport_size({"width": 1366, "height": 800})
    page.goto(f"{live_server.url}/admin/login/")
    for n in range(4):
        submit_login(page, "ada", f"guess-{n}")
        expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")
    screenshot("wrong-password")

    submit_login(page, "ada", "guess-4")
    expect(page.get_by_role("heading", name="Too many failed logins")).to_be_visible()

    page.goto(f"{live_server.url}/admin/login/")
    submit_login(page, "ada", PASSWORD)

    lockout = page.locator("#content-main")
    expect(lockout).to_contain_text("After 5 failed logins in a row")
    expect(lockout).to_contain_text(re.compile(r"Try again at \d\d:\d\d \S+ \(in about 15 minutes\)"))
    expect(lockout).to_contain_text("an administrator can unlock it now")
    expect(page.locator("#user-tools")).to_have_count(0)  # not logged in
    screenshot("locked-out")


def test_a_user_with_an_authenticator_app_logs_in_with_its_code(page: Page, live_server, screenshot):
    ada = UserFactory(username="ada")
    device = TOTPDevice.objects.create(user=ada, name="Ada's phone", confirmed=True)
    page.set_viewport_size({"width": 1366, "height": 800})
    page.goto(f"{live_server.url}/admin/login/")

    submit_login(page, "ada", PASSWORD)
    expect(page.locator(".errornote")).to_contain_text("Enter the 6-digit code from your authenticator app.")
    screenshot("code-asked")

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    submit_login(page, "ada", PASSWORD, f"{totp.token():06d}")

    expect(page.locator("#user-tools")).to_contain_text("ada")
