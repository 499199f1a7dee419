from __future__ import annotations

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _


class Forward(models.Model):
    """The transactional outbox: a profile that must be (re)sent to a connection.

    Rows are written in the same transaction as the change that caused them, so a change
    can never be committed without its forward. A worker claims rows (a lease, so a dead
    worker's claim expires), coalesces every row of a profile into one request computed
    from the database at send time, and deletes them once Customer.io has answered.
    """

    class Reason(models.TextChoices):
        MEMBERSHIP = "membership", _("Membership change")
        IDENTITY = "identity", _("Identity change")
        ACTIVATION = "activation", _("Subscription activated")
        RENAME = "rename", _("Audience renamed")
        RESYNC = "resync", _("Resync")
        RETRY = "retry", _("Retried from the admin")

    # No foreign key constraints in the database (db_constraint=False): PostgreSQL checks each
    # one with a locking lookup per inserted row at commit, which was the larger part of a
    # Firehose message's commit (issue 14). Deletes still cascade (Django's collector), and a
    # row a concurrent transaction leaves behind is harmless: `payloads.plan` finishes a row
    # whose profile is gone, and the sweep removes rows whose connection is gone.
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # the composite indexes starting with connection serve
        related_name="forwards",
        verbose_name=_("connection"),
        help_text=_("Where the profile is sent."),
    )
    profile = models.ForeignKey(
        "connections.Profile",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # forward_profile_conn starts with the profile
        related_name="forwards",
        verbose_name=_("profile"),
        help_text=_("Who is sent."),
    )
    audience = models.ForeignKey(
        "connections.Audience",
        on_delete=models.CASCADE,
        db_constraint=False,
        # Not indexed: every read by audience also names the connection (forward_conn_due narrows
        # it), and each index costs every membership change an insert (see the README, issue 14).
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("audience"),
        help_text=_("The audience whose membership is forwarded; empty for identity changes and resyncs."),
    )
    reason = models.CharField(
        _("reason"), max_length=12, choices=Reason.choices, help_text=_("What caused the forward.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was queued."))
    due_at = models.DateTimeField(_("due at"), help_text=_("Not sent before this time (backoff)."))
    attempts = models.PositiveIntegerField(_("attempts"), default=0, help_text=_("Attempts made so far."))
    claimed_until = models.DateTimeField(
        _("claimed until"), null=True, blank=True, help_text=_("A worker holds it until then.")
    )
    claim_token = models.CharField(
        _("claim token"), max_length=32, blank=True, default="", help_text=_("Which claim holds it.")
    )

    class Meta:
        verbose_name = _("pending forward")
        verbose_name_plural = _("pending forwards")
        indexes = [
            models.Index(fields=["connection", "due_at"], name="forward_conn_due"),
            # Profile first: it serves the claims' (connection, profiles) lookups and a profile's
            # cascade delete alike, so the outbox needs no separate index on the profile.
            models.Index(fields=["profile", "connection"], name="forward_profile_conn"),
            models.Index(fields=["claim_token"], name="forward_claim", condition=~Q(claim_token="")),
        ]
        constraints = [
            # The backlog stays bounded (SPEC section 4): at most one waiting row per profile and
            # audience (and one audience-less row) per connection, whatever the number of changes.
            # Writers insert with ON CONFLICT DO NOTHING; rows a worker holds are never merged into.
            models.UniqueConstraint(
                F("connection"),
                F("profile"),
                Coalesce(F("audience"), Value(0)),
                condition=Q(claim_token=""),
                name="forward_unique_unclaimed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} → {self.connection_id} ({self.reason})"
