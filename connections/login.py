"""Logins that cannot be guessed: django-axes' lockout and django-otp's TOTP codes, wired for the admin.

- `client_ip`: the address axes counts failures against (AXES_CLIENT_IP_CALLABLE). REMOTE_ADDR,
  or behind TRUSTED_PROXY_COUNT reverse proxies that append to X-Forwarded-For, the entry the
  outermost of them appended: the addresses left of it are whatever the client sent.
- `lockout_response`: the page a locked-out login gets (AXES_LOCKOUT_CALLABLE), saying when to try again.
- `LoginForm`: the admin's login form, with an "Authentication code" field. A user with a confirmed
  TOTP device must give a current code, and so must everyone when ADMIN_REQUIRE_2FA is on. A wrong or
  missing code is a failed login for axes (the `user_login_failed` signal), so codes cannot be guessed
  either. The password error comes first, so the code step says nothing to someone without the password.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

LOCKOUT_TEMPLATE = "admin/login_locked_out.html"


def client_ip(request: HttpRequest) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    chain = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(chain) < proxies:
        return remote  # not through the expected proxies: the connecting address is all that is known
    candidate = chain[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def locked_until(request: HttpRequest, credentials: dict | None) -> datetime | None:
    """When this (username, address) may try again: its latest counted failure plus the cool-off."""
    cool_off = get_cool_off(request)
    if cool_off is None:
        return None
    latest = (
        AccessAttempt.objects.filter(
            username=get_client_username(request, credentials), ip_address=client_ip(request)
        )
        .order_by("-attempt_time")
        .values_list("attempt_time", flat=True)
        .first()
    )
    return (latest or timezone.now()) + cool_off


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    until = locked_until(request, credentials)
    minutes = None if until is None else max(1, -(-int((until - timezone.now()).total_seconds()) // 60))
    context = {
        "title": "Too many failed logins",
        "failure_limit": get_failure_limit(request, credentials),
        "until": until,
        "minutes": minutes,
        "site_header": "cioaudience",
        "site_title": "cioaudience",
    }
    return render(request, LOCKOUT_TEMPLATE, context, status=settings.AXES_HTTP_RESPONSE_CODE)


def confirmed_devices(user) -> list[TOTPDevice]:  # type: ignore[no-untyped-def]
    return list(TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk"))


class LoginForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=16,
        help_text="The 6-digit code from your authenticator app, if two-factor login is set up for you.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "code_required": "Enter the 6-digit code from your authenticator app.",
        "code_invalid": "That authentication code is not right, or has expired. Enter the current one.",
        "code_throttled": "Several wrong codes in a row: wait a few seconds, then enter the current code.",
        "code_not_set_up": "Two-factor login is required, and it is not set up for you yet. "
        "Ask an administrator to add an authenticator app (a TOTP device) to your account.",
    }

    def clean(self):  # type: ignore[no-untyped-def]
        cleaned = super().clean()
        user = self.get_user()
        if user is not None:
            self._check_code(user, cleaned.get("otp_token", "").replace(" ", ""))
        return cleaned

    def _check_code(self, user, token: str) -> None:  # type: ignore[no-untyped-def]
        devices = confirmed_devices(user)
        if not devices:
            if settings.ADMIN_REQUIRE_2FA:
                raise forms.ValidationError(self.error_messages["code_not_set_up"], code="code_not_set_up")
            return
        if not token:
            self._failed(user)
            raise forms.ValidationError(self.error_messages["code_required"], code="code_required")
        allowed = [device for device in devices if device.verify_is_allowed()[0]]
        for device in allowed:
            if device.verify_token(token):
                user.otp_device = device  # django_otp marks the session verified when the login completes
                return
        self._failed(user)
        # django-otp makes a device wait 1, 2, 4... seconds after each wrong code.
        code = "code_invalid" if allowed else "code_throttled"
        raise forms.ValidationError(self.error_messages[code], code=code)

    def _failed(self, user) -> None:  # type: ignore[no-untyped-def]
        """Counted by axes like a wrong password, against this username and address."""
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username()}, request=self.request
        )
