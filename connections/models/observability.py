"""What /metrics and the alert emails read besides the working tables: history and running totals.

Every figure here lives in the database, so each web and worker process reports the same
values and nothing is lost when a process restarts (SPEC section 13).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ConnectionStateChange(models.Model):
    """One transition of a connection's state (active, backing off, faulted), written by the circuit breaker."""

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_index=False,  # the (connection, at) index serves
        related_name="state_changes",
        verbose_name=_("connection"),
        help_text=_("The connection whose state changed."),
    )
    from_state = models.CharField(_("from"), max_length=12, help_text=_("The state it left."))
    to_state = models.CharField(_("to"), max_length=12, help_text=_("The state it entered."))
    reason = models.CharField(_("reason"), max_length=500, blank=True, help_text=_("Why, in a few words."))
    at = models.DateTimeField(_("at"), help_text=_("When it changed."))

    class Meta:
        verbose_name = _("connection state change")
        verbose_name_plural = _("connection state changes")
        indexes = [models.Index(fields=["connection", "-at"], name="state_change_conn_at")]

    def __str__(self) -> str:
        return f"{self.connection_id}: {self.from_state} → {self.to_state}"


class DeliveryTally(models.Model):
    """Running totals of finished log rows up to `TallyMark.counted_until`: deliveries by status, request latency.

    The forwarding log itself is pruned (DELIVERY_RETENTION_DAYS) and far too big to count at
    every scrape; these rows keep Prometheus counters monotonic and the scrape cheap. `kind`
    "status": `key` is a Delivery status; kind "latency": `key` is a bucket's upper bound in
    seconds ("+Inf" last), with `total` the sum of the requests' durations in seconds.
    """

    class Kind(models.TextChoices):
        STATUS = "status", _("Deliveries by status")
        LATENCY = "latency", _("Requests by duration bucket")

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_index=False,  # the unique constraint's index starts with it
        related_name="+",
        verbose_name=_("connection"),
        help_text=_("The connection counted."),
    )
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, help_text=_("What is counted."))
    key = models.CharField(_("key"), max_length=16, help_text=_("A delivery status, or a latency bucket bound."))
    count = models.BigIntegerField(_("count"), default=0, help_text=_("Rows (or requests) counted so far."))
    total = models.FloatField(_("total"), default=0.0, help_text=_("Latency only: seconds summed."))

    class Meta:
        verbose_name = _("delivery tally")
        verbose_name_plural = _("delivery tallies")
        constraints = [
            models.UniqueConstraint(fields=["connection", "kind", "key"], name="delivery_tally_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.kind} {self.key}: {self.count}"


class TallyMark(models.Model):
    """The single row saying up to when (log rows' `created_at`) `DeliveryTally` has counted."""

    counted_until = models.DateTimeField(
        _("counted until"), help_text=_("Log rows created up to this moment are in the tallies.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("When the tallies last advanced."))

    class Meta:
        verbose_name = _("tally mark")
        verbose_name_plural = _("tally marks")

    def __str__(self) -> str:
        return f"counted until {self.counted_until:%Y-%m-%d %H:%M:%S}"


class FirehoseCount(models.Model):
    """How many Firehose requests of each message type got each outcome, since the start."""

    message_type = models.CharField(
        _("message type"), max_length=64, help_text=_("The message's `type`, or \"unknown\" when unreadable.")
    )
    outcome = models.CharField(
        _("outcome"), max_length=16, help_text=_("accepted, invalid, unauthorized, too_large or error.")
    )
    count = models.BigIntegerField(_("count"), default=0, help_text=_("Requests counted."))

    class Meta:
        verbose_name = _("Firehose count")
        verbose_name_plural = _("Firehose counts")
        constraints = [
            models.UniqueConstraint(fields=["message_type", "outcome"], name="firehose_count_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.message_type} {self.outcome}: {self.count}"


class AlertEpisode(models.Model):
    """A problem with a connection, from the check that saw it start to the one that saw it end.

    One email is sent when an episode opens and one when it closes; while it stays open,
    repeated checks send nothing. At most one open episode per connection and kind.
    """

    class Kind(models.TextChoices):
        FAULTED = "faulted", _("Faulted")
        BACKING_OFF = "backing_off", _("Backing off too long")
        BACKLOG = "backlog", _("Backlog too old")

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_index=False,  # the (connection, kind) indexes serve
        related_name="alert_episodes",
        verbose_name=_("connection"),
        help_text=_("The connection with the problem."),
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices, help_text=_("What is wrong."))
    detail = models.TextField(_("detail"), blank=True, help_text=_("What the check saw when it opened."))
    started_at = models.DateTimeField(_("started at"), help_text=_("When a check first saw it."))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True, help_text=_("When a check saw it gone."))
    opened_email_at = models.DateTimeField(
        _("alert sent at"), null=True, blank=True, help_text=_("When the alert email went out.")
    )
    closed_email_at = models.DateTimeField(
        _("recovery sent at"), null=True, blank=True, help_text=_("When the recovery email went out.")
    )

    class Meta:
        verbose_name = _("alert episode")
        verbose_name_plural = _("alert episodes")
        indexes = [models.Index(fields=["connection", "kind", "-started_at"], name="alert_conn_kind_started")]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind"], condition=Q(ended_at__isnull=True), name="alert_one_open_episode"
            ),
        ]

    def __str__(self) -> str:
        state = "open" if self.ended_at is None else "closed"
        return f"{self.connection_id} {self.kind} ({state})"


# Counting what happened (a refused request included) is bookkeeping, like a log line: tests that
# show "bad input changed nothing" compare every table but these.
TELEMETRY_MODELS = ("connections.firehosecount", "connections.deliverytally", "connections.tallymark")
