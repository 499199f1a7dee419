"""Alert emails: one when a connection's problem starts, one when it ends, never one per failure.

`check()` runs from beat every ALERT_CHECK_INTERVAL_SECONDS. It compares what each connection
has now (`alert_rules.problems`) with its open `AlertEpisode` rows: a new problem opens an
episode, a problem gone closes it. Emails follow the episodes, not the checks, so repeated
checks of a lasting problem send nothing more. An email that could not be sent (the mail
server is down) is sent by a later check; the unique "one open episode per connection and
kind" index and the conditional updates below keep two checks from opening or mailing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from connections.models import AlertEpisode, Connection, Forward
from connections.services.visibility.alert_rules import ConnectionSnapshot, Thresholds, problems

log = logging.getLogger("cioaudience.alerts")

LAST_ERROR_MAX_CHARS = 500


@dataclass
class CheckReport:
    opened: int = 0
    closed: int = 0
    emails_sent: int = 0
    emails_failed: int = 0


def thresholds() -> Thresholds:
    return Thresholds(
        backing_off_after=timedelta(minutes=settings.ALERT_BACKING_OFF_MINUTES),
        backlog_after=timedelta(minutes=settings.ALERT_BACKLOG_MINUTES),
    )


def snapshots() -> dict[int, tuple[Connection, ConnectionSnapshot]]:
    """Every connection with what the rules need: two queries."""
    waiting = Forward.objects.values("connection_id").annotate(t=Min("created_at")).order_by()
    oldest = dict(waiting.values_list("connection_id", "t"))
    found = {}
    for connection in Connection.objects.defer(*Connection.SECRET_FIELDS).order_by("pk"):
        found[connection.pk] = (
            connection,
            ConnectionSnapshot(
                state=connection.state,
                state_since=connection.state_changed_at or connection.failing_since,
                oldest_waiting=oldest.get(connection.pk),
                last_error=connection.last_error,
            ),
        )
    return found


def check(now: datetime | None = None) -> CheckReport:
    now = now or timezone.now()
    report = CheckReport()
    rules = thresholds()
    current = snapshots()
    open_episodes = {(e.connection_id, e.kind): e for e in AlertEpisode.objects.filter(ended_at__isnull=True)}
    for connection_id, (_connection, snapshot) in current.items():
        for kind, detail in problems(snapshot, rules, now).items():
            if (connection_id, kind) in open_episodes:
                open_episodes.pop((connection_id, kind))
                continue
            if _open(connection_id, kind, detail, now):
                report.opened += 1
    for episode in open_episodes.values():  # problems gone, or connections deleted (cascade removed those)
        report.closed += AlertEpisode.objects.filter(pk=episode.pk, ended_at__isnull=True).update(ended_at=now)
    _send_pending(report)
    return report


def _open(connection_id: int, kind: str, detail: str, now: datetime) -> bool:
    try:
        with transaction.atomic():
            AlertEpisode.objects.create(connection_id=connection_id, kind=kind, detail=detail, started_at=now)
    except IntegrityError:
        return False  # another check opened it a moment ago
    return True


def _send_pending(report: CheckReport) -> None:
    """Emails owed: each open episode's alert, and the recovery of each episode whose alert went out."""
    recipients = settings.ALERT_EMAILS
    if not recipients:
        return
    to_open = AlertEpisode.objects.filter(ended_at__isnull=True, opened_email_at__isnull=True)
    to_close = AlertEpisode.objects.filter(
        ended_at__isnull=False, opened_email_at__isnull=False, closed_email_at__isnull=True
    )
    for episode in to_open.select_related("connection"):
        _send(episode, "opened", recipients, report)
    for episode in to_close.select_related("connection"):
        _send(episode, "closed", recipients, report)


def _send(episode: AlertEpisode, which: str, recipients: list[str], report: CheckReport) -> None:
    stamp = "opened_email_at" if which == "opened" else "closed_email_at"
    with transaction.atomic():
        # Hold the episode while mailing: a check running at the same time skips it.
        held = (
            AlertEpisode.objects.select_for_update(skip_locked=True)
            .filter(pk=episode.pk, **{f"{stamp}__isnull": True})
            .exists()
        )
        if not held:
            return
        subject, body = compose(episode, which)
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
        except OSError as error:  # smtplib's errors are OSErrors: the mail server is down or refused
            report.emails_failed += 1
            log.warning("alert email not sent, a later check retries episode=%s error=%s", episode.pk, error)
            return
        AlertEpisode.objects.filter(pk=episode.pk).update(**{stamp: timezone.now()})
        report.emails_sent += 1
        log.info("alert email sent episode=%s kind=%s %s", episode.pk, episode.kind, which)


def compose(episode: AlertEpisode, which: str) -> tuple[str, str]:
    """The subject and plain-text body of an episode's email: never a credential."""
    connection = episode.connection
    context = {
        "connection": connection.name,
        "problem": AlertEpisode.Kind(episode.kind).label,
        "detail": episode.detail,
        "started_at": episode.started_at,
        "ended_at": episode.ended_at,
        "page": page_url(connection.pk),
        # Last errors are Customer.io's answers and the client's messages, which never hold the key.
        "last_error": connection.last_error[:LAST_ERROR_MAX_CHARS],
        "last_error_at": connection.last_error_at,
        "state": Connection.State(connection.state).label,
    }
    if which == "opened":
        subject = f"[cioaudience] {connection.name}: {context['problem'].lower()}"
    else:
        subject = f"[cioaudience] {connection.name} recovered: no longer {context['problem'].lower()}"
    body = render_to_string(f"connections/alerts/{which}.txt", context)
    return subject, body


def page_url(connection_id: int) -> str:
    path = reverse("admin:connections_connection_change", args=[connection_id])
    return f"{settings.SITE_URL.rstrip('/')}{path}"
