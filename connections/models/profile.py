from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from connections.models.constraint_errors import FieldConstraintErrors


class Profile(FieldConstraintErrors):
    """A person. `customer_id` is their Customer.io identifier; without it they are not forwarded."""

    customer_id = models.CharField(
        _("customer ID"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("The raw Customer ID, used as the Customer.io identifier. Empty: not forwarded."),
    )
    email = models.CharField(_("email"), max_length=254, blank=True, default="", help_text=_("Sent as `email`."))
    first_name = models.CharField(
        _("first name"), max_length=150, blank=True, default="", help_text=_("Sent as `first_name`.")
    )
    last_name = models.CharField(
        _("last name"), max_length=150, blank=True, default="", help_text=_("Sent as `last_name`.")
    )
    mpid = models.CharField(
        _("mParticle ID"),
        max_length=64,
        null=True,
        blank=True,
        help_text=_("mParticle's id of the person (mpid), when the profile came from mParticle."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, help_text=_("When it was created."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("When it was last changed."))

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")
        constraints = [
            models.UniqueConstraint(
                fields=["customer_id"],
                condition=~Q(customer_id=""),
                name="profile_unique_customer_id",
                violation_error_code="customer_id_taken",
                violation_error_message=_("Another profile already has this customer ID: open that profile instead."),
            ),
            models.UniqueConstraint(
                fields=["mpid"],
                condition=Q(mpid__isnull=False),
                name="profile_unique_mpid",
                violation_error_code="mpid_taken",
                violation_error_message=_("Another profile already has this mParticle ID: open that profile instead."),
            ),
        ]
        indexes = [
            # The admin's search: a customer ID prefix (LIKE 'x%' needs the pattern operator class on
            # PostgreSQL) or an exact email in any case.
            models.Index(fields=["customer_id"], name="profile_customer_prefix", opclasses=["varchar_pattern_ops"]),
            models.Index(Upper("email"), name="profile_email_upper"),
        ]

    def __str__(self) -> str:
        return self.customer_id or (f"mpid {self.mpid}" if self.mpid else f"profile #{self.pk}")


class Membership(FieldConstraintErrors):
    """Whether a profile is in an audience, and since when."""

    # No foreign key constraints in the database (db_constraint=False), as in the outbox: PostgreSQL
    # checks each one with a locking lookup per inserted row at commit, 1,000 lookups and about
    # 10 ms for a 100-profile message in 5 audiences (issue 14). Integrity is kept by locks taken
    # once per row instead: a message reads the stored profiles and audiences it writes under FOR
    # KEY SHARE (`profile_rows`, `memberships.ensure_audiences`), and whatever deletes a profile
    # or an audience locks it FOR UPDATE first, so the two never interleave. Deletes still
    # cascade through Django's collector.
    profile = models.ForeignKey(
        Profile,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # the unique (profile, audience) index serves: one index less to write per row
        related_name="memberships",
        verbose_name=_("profile"),
        help_text=_("The person."),
    )
    audience = models.ForeignKey(
        "connections.Audience",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # the (audience, is_member) index serves
        related_name="memberships",
        verbose_name=_("audience"),
        help_text=_("The audience."),
    )
    is_member = models.BooleanField(
        _("is member"), default=True, help_text=_('Unticked: a recorded ex-member (sent as "false").')
    )
    changed_at = models.DateTimeField(_("changed at"), help_text=_("When membership last changed."))
    source_time = models.DateTimeField(
        _("source time"),
        null=True,
        blank=True,
        help_text=_(
            "The source's own time of the change applied last (mParticle's timestamp_ms); a change stamped "
            "earlier arrives late and is ignored. Admin and import edits count as now."
        ),
    )

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "audience"],
                name="membership_unique_profile_audience",
                violation_error_code="membership_exists",
                violation_error_message=_("This person already has a row for this audience: change that row instead."),
            ),
        ]
        indexes = [
            # An audience's people in id order (a streamed activation or resync reads them page by page,
            # from a checkpoint): one index range per page, however large the audience and however
            # fresh its statistics. is_member rides along, so counting members reads only the index.
            models.Index(fields=["audience", "profile"], include=["is_member"], name="membership_audience_profile"),
        ]

    def __str__(self) -> str:
        return f"{self.profile} {'in' if self.is_member else 'not in'} {self.audience}"
