from __future__ import annotations

import secrets
from datetime import datetime

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from connections.crypto import Ciphertext, EncryptedTextField
from connections.models.constraint_errors import FieldConstraintErrors

# Customer.io's Site IDs are 20 hexadecimal characters; the stand-in's and older workspaces'
# may differ, so any letters, digits, dots, dashes and underscores are taken. The Site ID is the
# user name of HTTP Basic authentication: a space, a colon or other punctuation can only be a
# copying mistake. (Surrounding whitespace is stripped by the form before this check.)
site_id_validator = RegexValidator(
    r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z",
    message=_(
        "A Site ID has only letters, digits, dots, dashes and underscores, with no spaces (for example "
        "3f9a1c2b7d4e5f6a8b0c). Copy it again from Customer.io: Settings, API credentials."
    ),
    code="site_id_invalid",
)


def new_connection_key() -> str:
    return secrets.token_urlsafe(18)


class Connection(FieldConstraintErrors):
    """One Customer.io workspace that audience membership is forwarded to."""

    # The fields that hold secrets: encrypted at rest, never shown, deferred wherever they are not used.
    SECRET_FIELDS = ("api_key", "app_api_key")

    class Region(models.TextChoices):
        US = "us", _("US")
        EU = "eu", _("EU")

    class Transport(models.TextChoices):
        V2_BATCH = "v2_batch", _("v2 batch (many people per request)")
        V1 = "v1", _("v1 per person (one request per person)")

    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        BACKING_OFF = "backing_off", _("Backing off (Customer.io keeps failing; probing)")
        FAULTED = "faulted", _("Faulted (credentials rejected)")

    class IdentifyBy(models.TextChoices):
        CUSTOMER_ID = "customer_id", _("Customer ID")
        CUSTOMER_ID_OR_EMAIL = "customer_id_or_email", _("Customer ID, or the email for people without one")
        EMAIL = "email", _("Email")

    class Erasure(models.TextChoices):
        SUPPRESS = "suppress", _("Suppress (delete the person and keep them from being re-added)")
        DELETE = "delete", _("Delete the person")
        NONE = "none", _("Nothing (erase here only)")

    name = models.CharField(
        _("name"), max_length=100, unique=True, help_text=_("A name you will recognise this workspace by.")
    )
    site_id = models.CharField(
        _("Site ID"),
        max_length=100,
        validators=[site_id_validator],
        help_text=_("The Track API Site ID, from Customer.io's API credentials page."),
    )
    api_key = EncryptedTextField(
        _("API key"),
        help_text=_("The Track API key. Stored encrypted; it is never shown again after you save it."),
    )
    api_key_last4 = models.CharField(
        _("API key ends with"),
        max_length=4,
        blank=True,
        editable=False,
        help_text=_("The last four characters of the API key, to tell keys apart."),
    )
    region = models.CharField(
        _("region"),
        max_length=2,
        choices=Region.choices,
        default=Region.US,
        help_text=_("The data center of the Customer.io workspace."),
    )
    one_attribute_per_audience = models.BooleanField(
        _("create one user attribute per audience"),
        default=False,
        help_text=_(
            'On: one attribute per audience, "In <audience name>" = "true"/"false". '
            "Off: a single attribute SegmentMembership listing audience ids, e.g. \"'123','456'\"."
        ),
    )
    transport = models.CharField(
        _("transport"),
        max_length=10,
        choices=Transport.choices,
        default=Transport.V2_BATCH,
        help_text=_("How updates are sent: v2 batches many people into one request."),
    )
    rate_limit = models.PositiveIntegerField(
        _("rate limit"),
        default=100,
        help_text=_("Most requests per second sent to this workspace, shared by all workers."),
    )
    state = models.CharField(
        _("state"),
        max_length=12,
        choices=State.choices,
        default=State.ACTIVE,
        db_index=True,
        help_text=_(
            "Backing off: Customer.io keeps failing, one probe at a time is sent until it answers. "
            "Faulted: Customer.io rejected the credentials; forwards wait until it is resumed."
        ),
    )
    state_changed_at = models.DateTimeField(
        _("state since"), null=True, blank=True, help_text=_("When the connection entered its current state.")
    )
    # The circuit breaker (services/connection/breaker.py).
    failing_since = models.DateTimeField(
        _("failing since"),
        null=True,
        blank=True,
        help_text=_("Start of the current run of transient failures with no success in between."),
    )
    consecutive_failures = models.PositiveIntegerField(
        _("consecutive failures"), default=0, help_text=_("Transient failures in a row since the last success.")
    )
    failed_probes = models.PositiveIntegerField(
        _("failed probes"), default=0, help_text=_("Probes that failed since the breaker opened (sets the interval).")
    )
    next_probe_at = models.DateTimeField(
        _("next probe at"), null=True, blank=True, help_text=_("While backing off: when the next probe is sent.")
    )
    paused_until = models.DateTimeField(
        _("paused until"),
        null=True,
        blank=True,
        help_text=_("Customer.io asked every sender to wait (429 or Retry-After): nothing is sent before this."),
    )
    forward_hold_until = models.DateTimeField(
        _("forwarding held until"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("During a flood of changes: the one worker task that will send them comes back at this time."),
    )
    identify_by = models.CharField(
        _("identify people by"),
        max_length=24,
        choices=IdentifyBy.choices,
        default=IdentifyBy.CUSTOMER_ID,
        help_text=_("The identifier sent to Customer.io. People without it are skipped, with the reason in the log."),
    )
    update_existing_only = models.BooleanField(
        _("update existing people only"),
        default=False,
        help_text=_(
            "Never create people in Customer.io, only update those it has (v2 sends \"_update\": true). "
            "Needs the v2 batch transport."
        ),
    )
    segment_membership_always = models.BooleanField(
        _("SegmentMembership always"),
        default=False,
        help_text=_(
            "Also send SegmentMembership when one attribute per audience is on, as mParticle's current "
            "integration does."
        ),
    )
    app_api_key = EncryptedTextField(
        _("App API key"),
        blank=True,
        default="",
        help_text=_(
            "Optional. Customer.io App API key, to create manual segments from the admin. Stored encrypted; "
            "never shown again."
        ),
    )
    app_api_key_last4 = models.CharField(
        _("App API key ends with"),
        max_length=4,
        blank=True,
        editable=False,
        help_text=_("The last four characters of the App API key."),
    )
    erasure = models.CharField(
        _("on erasure"),
        max_length=10,
        choices=Erasure.choices,
        default=Erasure.SUPPRESS,
        help_text=_("What Customer.io is told when a person is erased here."),
    )
    connection_key = models.CharField(
        _("connection key"),
        max_length=64,
        unique=True,
        default=new_connection_key,
        help_text=_('Enter this value as the "Connection Key" setting of the mParticle output.'),
    )
    last_error = models.TextField(_("last error"), blank=True, help_text=_("The most recent error, if any."))
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, help_text=_("When it happened."))
    last_success_at = models.DateTimeField(
        _("last success at"), null=True, blank=True, help_text=_("When Customer.io last accepted an update.")
    )
    # Whether Customer.io has accepted the current Site ID and API key: services/connection/credentials.py
    # sets it (a check at save, "Test credentials", a delivery it took) and clears it when they change.
    credentials_verified_at = models.DateTimeField(
        _("credentials verified at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When Customer.io last accepted the current Site ID and API key; empty: not verified yet."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was created."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("When it was last changed."))

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=Q(region__in=["us", "eu"]),
                name="connection_region_valid",
                violation_error_code="region_invalid",
                violation_error_message=_("Choose the US or the EU region."),
            ),
            models.CheckConstraint(
                condition=Q(transport__in=["v2_batch", "v1"]),
                name="connection_transport_valid",
                violation_error_code="transport_invalid",
                violation_error_message=_("Choose the v2 batch or the v1 per-person transport."),
            ),
            models.CheckConstraint(
                condition=Q(state__in=["active", "backing_off", "faulted"]),
                name="connection_state_valid",
                violation_error_code="state_invalid",
                violation_error_message=_("The state must be active, backing off or faulted."),
            ),
            models.CheckConstraint(
                condition=Q(identify_by__in=["customer_id", "customer_id_or_email", "email"]),
                name="connection_identify_by_valid",
                violation_error_code="identify_by_invalid",
                violation_error_message=_(
                    "Choose how people are identified: by customer ID, by customer ID or email, or by email."
                ),
            ),
            models.CheckConstraint(
                condition=Q(erasure__in=["suppress", "delete", "none"]),
                name="connection_erasure_valid",
                violation_error_code="erasure_invalid",
                violation_error_message=_("Choose what Customer.io is told on erasure: suppress, delete or nothing."),
            ),
            models.CheckConstraint(
                condition=Q(rate_limit__gt=0),
                name="connection_rate_limit_positive",
                violation_error_code="rate_limit_too_low",
                violation_error_message=_("Rate limit must be at least 1 request per second."),
            ),
            models.CheckConstraint(
                condition=~Q(site_id=""),
                name="connection_site_id_not_empty",
                violation_error_code="site_id_empty",
                violation_error_message=_("Enter the Site ID, from Customer.io's API credentials page."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @sensitive_variables()  # every frame below holds the plaintext key: keep them out of error reports
    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        for field in self.SECRET_FIELDS:
            raw = self.__dict__.get(field)
            if raw and not isinstance(raw, Ciphertext):
                setattr(self, f"{field}_last4", raw[-4:])
                if kwargs.get("update_fields") is not None:
                    kwargs["update_fields"] = {*kwargs["update_fields"], f"{field}_last4"}
        super().save(*args, **kwargs)

    @property
    def credential_status(self) -> str:
        """"rejected" (faulted: Customer.io refused the key), "not_verified" or "accepted"."""
        if self.state == self.State.FAULTED:
            return "rejected"
        return "accepted" if self.credentials_verified_at else "not_verified"

    @property
    def last_error_resolved_at(self) -> datetime | None:
        """When Customer.io last answered normally, if that came after the last error (then the error is past)."""
        if not self.last_error_at or self.state != self.State.ACTIVE:
            return None
        answers = [moment for moment in (self.last_success_at, self.credentials_verified_at) if moment]
        latest = max(answers, default=None)
        return latest if latest and latest > self.last_error_at else None

    @property
    def masked_api_key(self) -> str:
        return f"…{self.api_key_last4}" if self.api_key_last4 else ""

    @property
    def masked_app_api_key(self) -> str:
        return f"…{self.app_api_key_last4}" if self.app_api_key_last4 else ""
