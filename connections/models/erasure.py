"""Erasure: the record kept of each one (no personal data), the Customer.io calls it queues, and
the identifiers a `suppress` erasure keeps from being forwarded again."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ErasureRecord(models.Model):
    """That a person was erased, when, why and with what outcome; never who.

    Kept after the personal data is gone, as the answer to "was this request honoured?".
    """

    class Source(models.TextChoices):
        MPARTICLE = "mparticle", _("mParticle data subject request")
        ADMIN = "admin", _("Admin")
        COMMAND = "command", _("erase_person command")

    request_id = models.CharField(
        _("request ID"),
        max_length=128,
        help_text=_("mParticle's subject_request_id, or an id made here for admin and command erasures."),
    )
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, help_text=_("Where the erasure was asked for.")
    )
    requested_by = models.CharField(
        _("requested by"),
        max_length=150,
        blank=True,
        help_text=_("The staff user (admin), the operating-system user (command), or empty (mParticle)."),
    )
    regulation = models.CharField(
        _("regulation"), max_length=16, blank=True, help_text=_("gdpr, ccpa or unknown, when mParticle says.")
    )
    matched_on = models.CharField(
        _("matched on"),
        max_length=40,
        blank=True,
        help_text=_("Which kinds of identifier were given (customer ID, email); never their values."),
    )
    profiles_erased = models.PositiveIntegerField(
        _("profiles erased"), default=0, help_text=_("Profiles deleted here (one person may have had several).")
    )
    memberships_erased = models.PositiveIntegerField(
        _("memberships erased"), default=0, help_text=_("Audience memberships deleted with them.")
    )
    deliveries_scrubbed = models.PositiveIntegerField(
        _("log rows scrubbed"), default=0, help_text=_("Forwarding-log rows whose personal values were removed.")
    )
    created_at = models.DateTimeField(_("erased at"), auto_now_add=True, help_text=_("When the erasure ran here."))

    class Meta:
        verbose_name = _("erasure")
        verbose_name_plural = _("erasures")
        ordering = ("-created_at",)
        constraints = [
            # Idempotent by request: mParticle may send one request to several outputs, or twice.
            models.UniqueConstraint(fields=["source", "request_id"], name="erasure_unique_request"),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.request_id}"


class ErasureCall(models.Model):
    """A Customer.io suppress or delete to send for an erased person: a small queue, like `Forward`.

    The identifier is the only personal value kept after an erasure, and only until Customer.io
    has accepted the call (or refused it for good); then it is blanked.
    """

    class Action(models.TextChoices):
        SUPPRESS = "suppress", _("Suppress")
        DELETE = "delete", _("Delete")
        NONE = "none", _("Nothing sent")

    class Status(models.TextChoices):
        PENDING = "pending", _("Queued")
        RETRYING = "retrying", _("Failed for now, will retry")
        SUCCEEDED = "succeeded", _("Done")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Nothing to send")

    class IdKind(models.TextChoices):
        ID = "id", _("Customer ID")
        EMAIL = "email", _("Email")

    record = models.ForeignKey(
        ErasureRecord,
        on_delete=models.CASCADE,
        related_name="calls",
        verbose_name=_("erasure"),
        help_text=_("The erasure this call belongs to."),
    )
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="erasure_calls",
        verbose_name=_("connection"),
        help_text=_("The Customer.io workspace (empty if the connection was deleted since)."),
    )
    connection_name = models.CharField(
        _("connection name"), max_length=100, help_text=_("The connection's name then, kept if it is deleted.")
    )
    action = models.CharField(
        _("action"), max_length=10, choices=Action.choices, help_text=_("What Customer.io is told.")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING, help_text=_("The outcome so far.")
    )
    identifier = models.CharField(
        _("identifier"),
        max_length=255,
        blank=True,
        help_text=_("Who to suppress or delete; blanked as soon as the call is done."),
    )
    id_kind = models.CharField(
        _("identifier kind"),
        max_length=5,
        choices=IdKind.choices,
        blank=True,
        help_text=_("Whether the identifier is a customer ID or an email, as the connection identifies people."),
    )
    due_at = models.DateTimeField(_("due at"), null=True, blank=True, help_text=_("Not sent before this (backoff)."))
    attempts = models.PositiveIntegerField(_("attempts"), default=0, help_text=_("Requests made so far."))
    claimed_until = models.DateTimeField(
        _("claimed until"), null=True, blank=True, help_text=_("A worker holds it until then.")
    )
    claim_token = models.CharField(
        _("claim token"), max_length=32, blank=True, default="", help_text=_("Which claim holds it.")
    )
    http_status = models.PositiveSmallIntegerField(
        _("HTTP status"), null=True, blank=True, help_text=_("Customer.io's last HTTP answer, if any.")
    )
    error = models.TextField(_("error"), blank=True, help_text=_("Why it failed or waits (never the identifier)."))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, help_text=_("When it ended."))

    class Meta:
        verbose_name = _("Customer.io erasure call")
        verbose_name_plural = _("Customer.io erasure calls")
        indexes = [
            models.Index(
                fields=["connection", "due_at"],
                name="erasurecall_due",
                condition=Q(status__in=["pending", "retrying"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} on {self.connection_name}: {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RETRYING)

    @classmethod
    def waiting(cls) -> tuple[int, datetime | None]:
        """How many calls are still to be answered by Customer.io, and when the oldest one's erasure ran here."""
        found = cls.objects.filter(status__in=[cls.Status.PENDING, cls.Status.RETRYING]).aggregate(
            n=models.Count("pk"), oldest=models.Min("record__created_at")
        )
        return found["n"], found["oldest"]


class SuppressedIdentifier(models.Model):
    """An identifier suppressed in a connection's workspace: not forwarded there again.

    Customer.io ignores a suppressed identifier; forwarding it anyway would only fill the log with
    pointless requests, and a later person with the same identifier must not be re-added. Only a
    hash is kept. Deleting the row (admin) un-suppresses it here; Customer.io has its own
    "unsuppress" (the README says how).
    """

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        related_name="suppressed_identifiers",
        verbose_name=_("connection"),
        help_text=_("The Customer.io workspace where the identifier is suppressed."),
    )
    identifier_hash = models.CharField(
        _("identifier hash"),
        max_length=64,
        help_text=_("SHA-256 of the identifier kind and value (connections.services.suppression.identifier_hash)."),
    )
    record = models.ForeignKey(
        ErasureRecord,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="suppressions",
        verbose_name=_("erasure"),
        help_text=_("The erasure that suppressed it."),
    )
    created_at = models.DateTimeField(_("suppressed at"), auto_now_add=True, help_text=_("When it was suppressed."))

    class Meta:
        verbose_name = _("suppressed identifier")
        verbose_name_plural = _("suppressed identifiers")
        constraints = [
            models.UniqueConstraint(fields=["connection", "identifier_hash"], name="suppressed_unique_identifier"),
        ]

    def __str__(self) -> str:
        return f"{self.identifier_hash[:12]}… on {self.connection_id}"
