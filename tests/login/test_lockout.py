"""Password guessing is locked out per (username, address) with django-axes; the rest of the world is not."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.support.factories import UserFactory

PASSWORD = "correct horse battery staple"  # UserFactory's
ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.20"
LOGIN = reverse("admin:login")


def log_in(client: Client, username: str, password: str, address: str, **headers: str):  # type: ignore[no-untyped-def]
    form = {"username": username, "password": password, "next": reverse("admin:index")}
    return client.post(LOGIN, form, REMOTE_ADDR=address, **headers)


def logged_in(response) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 302 and response.url == reverse("admin:index")


def wrong_passwords(client: Client, username: str, address: str, times: int = 5, **headers: str) -> list[int]:
    return [log_in(client, username, f"guess-{n}", address, **headers).status_code for n in range(times)]


def let_time_pass(minutes: float) -> None:
    """As if the attempts were made `minutes` earlier (the lockout counts from the last one)."""
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= timedelta(minutes=minutes)
        attempt.save(update_fields=["attempt_time"])


@pytest.fixture
def ada(db):
    return UserFactory(username="ada")


def test_five_wrong_passwords_lock_out_that_user_from_that_address_even_with_the_right_one(client, ada):
    # The first four are answered like any wrong password; the fifth locks the pair out.
    assert wrong_passwords(client, "ada", ATTACKER) == [200, 200, 200, 200, 429]

    refused = log_in(client, "ada", PASSWORD, ATTACKER)

    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many failed logins" in page
    assert "After 5 failed logins in a row" in page
    assert "Try again at" in page and "in about 15 minutes" in page
    assert "_auth_user_id" not in client.session


def test_another_address_or_another_user_is_not_locked_out(client, ada):
    UserFactory(username="grace")
    wrong_passwords(client, "ada", ATTACKER)

    assert logged_in(log_in(Client(), "ada", PASSWORD, NEIGHBOUR))
    assert logged_in(log_in(Client(), "grace", PASSWORD, ATTACKER))


def test_after_the_cool_off_the_right_password_works_again(client, ada):
    wrong_passwords(client, "ada", ATTACKER)
    let_time_pass(minutes=14)
    assert log_in(client, "ada", PASSWORD, ATTACKER).status_code == 429

    let_time_pass(minutes=2)

    assert logged_in(log_in(client, "ada", PASSWORD, ATTACKER))


def test_attempts_during_a_lockout_do_not_push_its_end_further(client, ada):
    wrong_passwords(client, "ada", ATTACKER)
    let_time_pass(minutes=10)
    assert wrong_passwords(client, "ada", ATTACKER, times=3) == [429, 429, 429]

    let_time_pass(minutes=6)

    assert logged_in(log_in(client, "ada", PASSWORD, ATTACKER))


def test_a_successful_login_starts_the_count_again(client, ada):
    wrong_passwords(client, "ada", ATTACKER, times=4)
    assert logged_in(log_in(client, "ada", PASSWORD, ATTACKER))

    assert wrong_passwords(Client(), "ada", ATTACKER, times=4) == [200, 200, 200, 200]


def test_an_operator_unlocks_with_axes_reset(client, ada):
    wrong_passwords(client, "ada", ATTACKER)

    call_command("axes_reset_username", "ada")

    assert logged_in(log_in(client, "ada", PASSWORD, ATTACKER))


def test_no_password_reaches_the_log_or_the_stored_attempts(client, ada, caplog):
    caplog.set_level(logging.INFO)
    wrong_passwords(client, "ada", ATTACKER)
    log_in(client, "ada", PASSWORD, ATTACKER)

    stored = " ".join(f"{a.post_data} {a.get_data}" for a in AccessAttempt.objects.all())
    for secret in ("guess-0", "guess-4", PASSWORD):
        assert secret not in caplog.text
        assert secret not in stored
    assert "Locking out" in caplog.text  # axes did log, without the secrets


class TestBehindAProxy:
    """The address counted is the client's, not the proxy's, when the operator says a proxy appends it."""

    PROXY = "10.0.0.2"

    def test_one_trusted_proxy_the_client_address_it_appended_is_counted(self, client, ada, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        wrong_passwords(client, "ada", self.PROXY, HTTP_X_FORWARDED_FOR=ATTACKER)

        # Someone else behind the same proxy still logs in; the attacker, whatever it puts first, does not.
        assert logged_in(log_in(Client(), "ada", PASSWORD, self.PROXY, HTTP_X_FORWARDED_FOR=NEIGHBOUR))
        spoofed = log_in(client, "ada", PASSWORD, self.PROXY, HTTP_X_FORWARDED_FOR=f"{NEIGHBOUR}, {ATTACKER}")
        assert spoofed.status_code == 429
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}

    def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(self, client, ada, settings):
        settings.TRUSTED_PROXY_COUNT = 0
        for n in range(5):  # a different made-up address each time: still one client
            log_in(client, "ada", f"guess-{n}", ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")

        assert log_in(client, "ada", PASSWORD, ATTACKER).status_code == 429
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_a_superuser_unlocks_in_the_admin_by_deleting_the_attempts(client, ada, superuser):
    wrong_passwords(client, "ada", ATTACKER)
    operator = Client()
    operator.force_login(superuser)
    attempts = operator.get(reverse("admin:axes_accessattempt_changelist"))
    assert "ada" in attempts.content.decode() and ATTACKER in attempts.content.decode()

    attempt = AccessAttempt.objects.get(username="ada")
    operator.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})

    assert logged_in(log_in(client, "ada", PASSWORD, ATTACKER))


def test_a_marketer_cannot_see_the_attempts(client, marketer):
    client.force_login(marketer)

    assert client.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
