from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from connections.models.constraint_errors import FieldConstraintErrors


class Audience(FieldConstraintErrors):
    """An audience of the source system (mParticle), identified by its numeric id."""

    audience_id = models.PositiveBigIntegerField(
        _("audience ID"), unique=True, help_text=_("The audience's numeric id in the source system (mParticle).")
    )
    name = models.CharField(
        _("name"),
        max_length=100,
        help_text=_('Up to 100 characters. With one attribute per audience, Customer.io gets "In <name>".'),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was created."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("When it was last changed."))

    class Meta:
        verbose_name = _("audience")
        verbose_name_plural = _("audiences")
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=Q(audience_id__gt=0),
                name="audience_id_positive",
                violation_error_code="audience_id_too_low",
                violation_error_message=_("The audience ID must be a whole number of 1 or more, as in mParticle."),
            ),
            models.CheckConstraint(
                condition=~Q(name=""),
                name="audience_name_not_empty",
                violation_error_code="audience_name_empty",
                violation_error_message=_("Enter the audience's name."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.audience_id})"


class Subscription(FieldConstraintErrors):
    """An audience forwarded to a connection (mParticle calls it an audience connection)."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        INACTIVE = "inactive", _("Inactive")

    audience = models.ForeignKey(
        Audience,
        on_delete=models.CASCADE,
        related_name="subscriptions",
        verbose_name=_("audience"),
        help_text=_("The audience whose membership is forwarded."),
    )
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        related_name="subscriptions",
        verbose_name=_("connection"),
        help_text=_("The Customer.io workspace it is forwarded to."),
    )
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=Status.choices,
        default=Status.ACTIVE,
        help_text=_("Only active subscriptions forward. Deactivating leaves Customer.io's attributes as they are."),
    )
    customerio_segment_id = models.PositiveIntegerField(
        _("Customer.io manual segment ID"),
        null=True,
        blank=True,
        help_text=_("Optional. Members are also added to this manual segment, and people who leave are removed."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was created."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("When it was last changed."))

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ("connection__name", "audience__name")
        constraints = [
            models.UniqueConstraint(
                fields=["audience", "connection"],
                name="subscription_unique_audience_connection",
                violation_error_code="subscription_exists",
                violation_error_message=_(
                    "This audience is already forwarded to this connection: change its subscription instead."
                ),
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "inactive"]),
                name="subscription_status_valid",
                violation_error_code="status_invalid",
                violation_error_message=_("The status must be active or inactive."),
            ),
            models.CheckConstraint(
                condition=Q(customerio_segment_id__isnull=True) | Q(customerio_segment_id__gt=0),
                name="subscription_segment_id_positive",
                violation_error_code="segment_id_too_low",
                violation_error_message=_(
                    "A Customer.io segment ID is a whole number of 1 or more (it is in the segment's address in "
                    "Customer.io). Leave the field empty for no manual segment."
                ),
            ),
        ]
        indexes = [models.Index(fields=["connection", "status"], name="subscription_conn_status")]

    def __str__(self) -> str:
        return f"{self.audience.name} → {self.connection.name}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE
