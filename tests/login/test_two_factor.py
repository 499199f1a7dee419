"""Two-factor login with a TOTP app (django-otp): who must give a code, what a wrong one does, ADMIN_REQUIRE_2FA."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.support.admin import changeform_data
from tests.support.factories import UserFactory

PASSWORD = "correct horse battery staple"  # UserFactory's
ADDRESS = "203.0.113.7"


def current_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def log_in(client: Client, username: str, code: str = "", password: str = PASSWORD):  # type: ignore[no-untyped-def]
    form = {"username": username, "password": password, "otp_token": code, "next": reverse("admin:index")}
    return client.post(reverse("admin:login"), form, REMOTE_ADDR=ADDRESS)


def reaches_the_admin(client: Client) -> bool:
    return client.get(reverse("admin:index")).status_code == 200


@pytest.fixture
def ada(db):
    return UserFactory(username="ada")


@pytest.fixture
def adas_app(ada) -> TOTPDevice:
    return TOTPDevice.objects.create(user=ada, name="Ada's phone", confirmed=True)


def test_a_user_with_an_authenticator_app_logs_in_with_its_current_code(client, adas_app):
    response = log_in(client, "ada", current_code(adas_app))

    assert response.status_code == 302
    assert reaches_the_admin(client)


def test_a_wrong_or_missing_code_is_refused(client, adas_app):
    wrong = f"{(int(current_code(adas_app)) + 1) % 1_000_000:06d}"

    refused = log_in(client, "ada", wrong)
    assert refused.status_code == 200
    assert "That authentication code is not right" in refused.content.decode()
    missing = log_in(client, "ada", "")
    assert "Enter the 6-digit code from your authenticator app." in missing.content.decode()
    assert not reaches_the_admin(client)


def test_the_code_is_not_asked_about_before_the_password_is_right(client, adas_app):
    response = log_in(client, "ada", "", password="wrong")

    page = response.content.decode()
    assert "Please enter the correct username and password" in page
    assert "authenticator app." not in page.replace("if two-factor login is set up for you", "")


def test_wrong_codes_count_toward_the_lockout(client, adas_app):
    answers = [log_in(client, "ada", "000000" if current_code(adas_app) != "000000" else "111111") for _ in range(5)]

    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    # Locked out: even the right code with the right password is refused now.
    assert log_in(client, "ada", current_code(adas_app)).status_code == 429


def test_an_unconfirmed_device_asks_for_nothing_yet(client, ada):
    TOTPDevice.objects.create(user=ada, name="being set up", confirmed=False)

    assert log_in(client, "ada").status_code == 302
    assert reaches_the_admin(client)


class TestSettingOff:
    """ADMIN_REQUIRE_2FA off (the default): a password is enough for users without an authenticator app."""

    def test_a_user_without_an_app_logs_in_with_the_password_alone(self, client, ada, settings):
        settings.ADMIN_REQUIRE_2FA = False

        assert log_in(client, "ada").status_code == 302
        assert reaches_the_admin(client)


class TestSettingOn:
    """ADMIN_REQUIRE_2FA on: every admin session needs a code."""

    def test_a_user_without_an_app_cannot_log_in_and_is_told_why(self, client, ada, settings):
        settings.ADMIN_REQUIRE_2FA = True

        response = log_in(client, "ada")

        assert "Two-factor login is required, and it is not set up for you yet." in response.content.decode()
        assert not reaches_the_admin(client)

    def test_a_user_with_an_app_logs_in_with_its_code(self, client, adas_app, settings):
        settings.ADMIN_REQUIRE_2FA = True

        log_in(client, "ada", current_code(adas_app))

        assert reaches_the_admin(client)

    def test_a_session_opened_without_a_code_no_longer_reaches_the_admin(self, client, ada, settings):
        client.force_login(ada)
        assert reaches_the_admin(client)

        settings.ADMIN_REQUIRE_2FA = True

        response = client.get(reverse("admin:index"))
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_a_code_given_while_the_app_is_throttled_is_refused_with_a_wait(client, adas_app):
    adas_app.throttle_increment()  # a wrong code a moment ago: django-otp makes it wait a second

    response = log_in(client, "ada", current_code(adas_app))

    assert "wait a few seconds, then enter the current code" in response.content.decode()
    assert not reaches_the_admin(client)


class TestEnrolment:
    """A superuser adds a TOTP device for a staff user in the admin and shows its QR code; a marketer cannot."""

    def test_a_superuser_adds_a_device_and_opens_its_qr_code(self, client, superuser, ada):
        client.force_login(superuser)

        add = reverse("admin:otp_totp_totpdevice_add")
        form = changeform_data(client.get(add))  # a fresh random key, confirmed, 6 digits, 30 s
        client.post(add, {**form, "user": ada.pk, "name": "Ada's phone"})
        device = TOTPDevice.objects.get(user=ada)
        config = client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk]))

        assert device.confirmed
        assert "otpauth://totp/cioaudience" in config.content.decode()
        assert log_in(Client(), "ada").status_code == 200  # from now on the code is asked for
        assert log_in(Client(), "ada", current_code(device)).status_code == 302

    def test_a_marketer_cannot_see_or_add_devices(self, client, marketer):
        client.force_login(marketer)

        assert client.get(reverse("admin:otp_totp_totpdevice_changelist")).status_code == 403
        assert client.get(reverse("admin:otp_totp_totpdevice_add")).status_code == 403
