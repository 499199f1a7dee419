"""Alert emails, received by a real SMTP server on 127.0.0.1: one when a problem starts, one when it ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import AlertEpisode, Connection, Forward
from connections.services.visibility import alerts
from tests.support.admin import make_forward
from tests.support.factories import ConnectionFactory, ProfileFactory
from tests.support.smtp import free_port, smtp_server

pytestmark = pytest.mark.django_db

API_KEY = "sk-alerts-9b8c7d6e5f4a"


@pytest.fixture
def inbox(settings):
    with smtp_server() as (inbox, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_TIMEOUT = 5
        settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
        settings.SITE_URL = "https://cio.example.com"
        settings.ALERT_BACKING_OFF_MINUTES = 15
        settings.ALERT_BACKLOG_MINUTES = 30
        yield inbox


def fault(connection: Connection, error: str = "Customer.io answered 401: Unauthorized") -> None:
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.FAULTED, last_error=error, last_error_at=timezone.now()
    )


def recover(connection: Connection) -> None:
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.ACTIVE)


def test_a_fault_sends_one_email_however_many_checks_see_it_and_one_when_it_recovers(inbox):
    connection = ConnectionFactory(name="EU workspace", api_key=API_KEY)
    fault(connection)

    for _ in range(5):
        alerts.check()
    assert inbox.subjects == ["[cioaudience] EU workspace: faulted"]

    recover(connection)
    for _ in range(3):
        alerts.check()

    assert inbox.subjects == [
        "[cioaudience] EU workspace: faulted",
        "[cioaudience] EU workspace recovered: no longer faulted",
    ]
    opened = inbox.body(0)
    assert f"https://cio.example.com/admin/connections/connection/{connection.pk}/change/" in opened
    assert "Customer.io answered 401: Unauthorized" in opened
    assert inbox.messages[0]["X-Envelope-To"] == "ops@example.com, oncall@example.com"
    for message in inbox.messages:
        assert API_KEY not in message.as_string() and API_KEY[-4:] not in message.get_content()


def test_a_second_fault_after_recovery_is_a_new_episode_with_its_own_two_emails(inbox):
    connection = ConnectionFactory(name="US")
    for _ in range(2):
        fault(connection)
        alerts.check()
        alerts.check()
        recover(connection)
        alerts.check()

    assert len(inbox.messages) == 4
    assert AlertEpisode.objects.filter(connection=connection, kind="faulted").count() == 2
    assert not AlertEpisode.objects.filter(ended_at__isnull=True).exists()


def test_backing_off_alerts_only_past_the_threshold(inbox):
    connection = ConnectionFactory(name="Flaky")
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.BACKING_OFF, state_changed_at=now - timedelta(minutes=10)
    )

    alerts.check(now)
    assert inbox.messages == []

    alerts.check(now + timedelta(minutes=6))
    assert inbox.subjects == ["[cioaudience] Flaky: backing off too long"]
    assert "Customer.io has kept failing for 16 minutes" in inbox.body(0)


def test_an_old_backlog_alerts_and_recovers_when_it_drains(inbox):
    connection = ConnectionFactory(name="Slow")
    profile = ProfileFactory()
    make_forward(connection, profile)
    Forward.objects.update(created_at=timezone.now() - timedelta(minutes=31))
    young = ConnectionFactory(name="Young")
    make_forward(young, profile)

    alerts.check()
    alerts.check()
    Forward.objects.filter(connection=connection).delete()
    alerts.check()

    assert inbox.subjects == [
        "[cioaudience] Slow: backlog too old",
        "[cioaudience] Slow recovered: no longer backlog too old",
    ]
    assert "has waited 31 minutes" in inbox.body(0)


def test_an_email_the_mail_server_could_not_take_is_sent_by_a_later_check(settings):
    connection = ConnectionFactory(name="Down")
    fault(connection)
    port = free_port()  # nothing listens there yet
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    settings.ALERT_EMAILS = ["ops@example.com"]

    report = alerts.check()
    assert (report.opened, report.emails_sent, report.emails_failed) == (1, 0, 1)

    with smtp_server(port) as (inbox, _port):
        alerts.check()
        alerts.check()

    assert inbox.subjects == ["[cioaudience] Down: faulted"]


def test_without_recipients_episodes_are_kept_and_nothing_is_mailed(inbox, settings):
    settings.ALERT_EMAILS = []
    connection = ConnectionFactory(name="Quiet")
    fault(connection)

    alerts.check()

    assert inbox.messages == []
    assert AlertEpisode.objects.filter(connection=connection, ended_at__isnull=True).count() == 1


def test_the_beat_schedule_runs_the_check(settings):
    from cioaudience.celery import app
    from connections import tasks

    task_names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert "connections.tasks.check_alerts" in task_names
    assert tasks.check_alerts.name in app.tasks and tasks.advance_delivery_tallies.name in app.tasks
