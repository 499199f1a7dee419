from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _


class InboundToken(models.Model):
    """A token that lets mParticle (or another sender) call the Firehose endpoint. Stored hashed."""

    name = models.CharField(_("name"), max_length=100, unique=True, help_text=_("Who uses this token."))
    token_hash = models.CharField(
        _("token hash"), max_length=64, unique=True, editable=False, help_text=_("SHA-256 of the token.")
    )
    prefix = models.CharField(
        _("prefix"), max_length=8, editable=False, help_text=_("The token's first characters, to tell tokens apart.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was created."))
    last_used_at = models.DateTimeField(
        _("last used at"), null=True, blank=True, help_text=_("When a request last authenticated with it.")
    )
    revoked_at = models.DateTimeField(
        _("revoked at"), null=True, blank=True, help_text=_("A revoked token is refused.")
    )

    class Meta:
        verbose_name = _("inbound token")
        verbose_name_plural = _("inbound tokens")
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# Stored messages applied alone, after every message before them and before any after them
# (firehose/shards.py): about an audience, or about a person by an identity (an email) that the
# appliers' shards do not follow. The last is an admin or erase_person erasure queued behind
# waiting messages (firehose/queued_erasure.py).
BARRIER_TYPES = ("audience_subscription_request", "dsr_processing_request", "cioaudience_erasure")


class FirehoseMessage(models.Model):
    """A Firehose message accepted: replaying its id changes nothing and gets the same answer.

    With FIREHOSE_APPLY=worker the request stores the checked message (`body`, `pending`) and a
    worker applies it; the body is cleared once it is applied.
    """

    message_id = models.CharField(_("message ID"), max_length=64, unique=True, help_text=_("The message's `id`."))
    message_type = models.CharField(_("type"), max_length=64, help_text=_("The message's `type`."))
    response = models.JSONField(_("response"), help_text=_("The answer given, repeated on a replay."))
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, help_text=_("When it was accepted."))
    pending = models.BooleanField(
        _("pending"), default=False, help_text=_("Accepted and stored, not yet applied by a worker.")
    )
    body = models.TextField(
        _("body"), null=True, blank=True, help_text=_("The message as received, kept until a worker applies it.")
    )
    shards_done = models.PositiveSmallIntegerField(
        _("shards applied"),
        db_default=0,  # also for the raw INSERT of `ingest.record_message`, and code older than the column
        help_text=_("A bit per slice of the message's people that a worker has applied (firehose/shards.py)."),
    )

    class Meta:
        verbose_name = _("Firehose message")
        verbose_name_plural = _("Firehose messages")
        indexes = [
            models.Index(fields=["received_at"], name="firehose_received"),
            # The worker's queue: the pending messages in the order they were accepted.
            models.Index(fields=["id"], condition=models.Q(pending=True), name="firehose_pending"),
            # The first barrier waiting (firehose/shards.py): batches are read below it.
            models.Index(
                fields=["id"],
                condition=models.Q(pending=True, message_type__in=BARRIER_TYPES),
                name="firehose_pending_barrier",
            ),
        ]

    # An admin or erase_person erasure queued behind waiting messages (firehose/queued_erasure.py).
    QUEUED_ERASURE = BARRIER_TYPES[2]
    # The stored types that erase a person: mParticle's DSR (firehose/envelope.py) and the above.
    ERASURE_TYPES = ("dsr_processing_request", QUEUED_ERASURE)
    BARRIER_TYPES = BARRIER_TYPES

    def __str__(self) -> str:
        return f"{self.message_type} {self.message_id}"

    @classmethod
    def waiting(cls, types: Collection[str] | None = None) -> tuple[int, datetime | None]:
        """How many accepted messages (of these types) wait for a worker, and when the oldest was accepted."""
        pending = cls.objects.filter(pending=True)
        if types is not None:
            pending = pending.filter(message_type__in=types)
        found = pending.aggregate(n=models.Count("pk"), oldest=models.Min("received_at"))
        return found["n"], found["oldest"]
