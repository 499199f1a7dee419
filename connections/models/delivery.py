from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

RESPONSE_MAX_CHARS = 2000


class Delivery(models.Model):
    """The forwarding log: one row per profile per attempt.

    Written as `pending` before the HTTP call and completed after it, so a crash in the
    middle still leaves a trace. Never holds credentials.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        RETRYING = "retrying", _("Failed for now, will retry")
        SKIPPED = "skipped", _("Skipped")
        CANCELLED = "cancelled", _("Cancelled")

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_index=False,  # the composite indexes starting with connection serve
        related_name="deliveries",
        verbose_name=_("connection"),
        help_text=_("The Customer.io workspace."),
    )
    profile = models.ForeignKey(
        "connections.Profile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
        verbose_name=_("profile"),
        help_text=_("The person (empty if the profile was deleted since)."),
    )
    customer_id = models.CharField(
        _("customer ID"), max_length=255, blank=True, help_text=_("The identifier sent to Customer.io.")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING, help_text=_("The outcome.")
    )
    reason = models.CharField(_("reason"), max_length=12, blank=True, help_text=_("What caused it."))
    action = models.CharField(
        _("action"),
        max_length=16,
        default="identify",
        help_text=_("identify, segment_add, segment_remove, suppress or delete."),
    )
    segment_id = models.PositiveIntegerField(
        _("segment"), null=True, blank=True, help_text=_("For a manual segment request: the segment's id.")
    )
    transport = models.CharField(_("transport"), max_length=10, blank=True, help_text=_("v2_batch or v1."))
    attributes = models.JSONField(_("attributes sent"), default=dict, blank=True, help_text=_("Exactly what was sent."))
    http_status = models.PositiveSmallIntegerField(
        _("HTTP status"), null=True, blank=True, help_text=_("Customer.io's HTTP answer, if any.")
    )
    response = models.TextField(
        _("response"), blank=True, help_text=_(f"Customer.io's answer, cut at {RESPONSE_MAX_CHARS} characters.")
    )
    error = models.TextField(_("error"), blank=True, help_text=_("Why it failed, was skipped or was cancelled."))
    attempt = models.PositiveIntegerField(_("attempt"), default=1, help_text=_("1 for the first try."))
    retry_at = models.DateTimeField(
        _("retry at"), null=True, blank=True, help_text=_("For a failed attempt that will be retried: when.")
    )
    duration_ms = models.PositiveIntegerField(
        _("duration (ms)"), null=True, blank=True, help_text=_("How long the request took.")
    )
    request_id = models.UUIDField(
        _("request"), null=True, blank=True, help_text=_("Profiles sent in the same request share this.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When the attempt started."))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, help_text=_("When it ended."))

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("forwarding log")
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed", "retrying", "skipped", "cancelled"]),
                name="delivery_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="delivery_created"),
            models.Index(fields=["connection", "-created_at"], name="delivery_conn_created"),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created"),
            models.Index(fields=["connection", "status", "-created_at"], name="delivery_conn_status_created"),
            models.Index(fields=["http_status", "-created_at"], name="delivery_http_created"),
            # The log's search: a customer ID prefix (LIKE 'x%' needs the pattern operator class on
            # PostgreSQL; equality, as the erasure's lookups use, is served by it too).
            models.Index(fields=["customer_id"], name="delivery_customer_prefix", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id or '—'} → {self.connection_id}: {self.status}"
