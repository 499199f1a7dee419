"""The compact forwarding log: one row per request that streams whole audiences (issue 29).

A batch of up to 1,000 people is one row: who was in it (`profile_ids`, in the order of the
body's items), exactly the bytes POSTed (`body`, compressed by TOAST), and what came back.
On PostgreSQL the table is partitioned by month on `created_at` (migration 0019), so pruning
drops whole months; its real primary key is (id, created_at). Django sees `id` alone as the
primary key: ids are unique all the same (one sequence), and the admin needs a single key.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models import Lookup
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .arrays import int_array_literal
from .delivery import RESPONSE_MAX_CHARS

# An erased person's place in profile_ids: the others keep their positions (erasure/batch_scrub.py).
ERASED_ID = 0


class ProfileIdsField(models.Field):
    """A list of profile ids: bigint[] on PostgreSQL (GIN-indexed), a JSON list elsewhere (SQLite).

    Filter with `profile_ids__has=<id>`: `@>` on PostgreSQL, served by the GIN index.
    """

    description = "A list of profile ids"

    def db_type(self, connection: Any) -> str:
        return "bigint[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> list[int] | None:
        if value is None or isinstance(value, list):
            return value
        return list(json.loads(value))

    def to_python(self, value: Any) -> list[int] | None:
        if value is None or isinstance(value, list):
            return value
        return list(json.loads(value))

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        # As they come (a list of plain ints, from the sender): no per-id work on the streaming path,
        # and on PostgreSQL one array literal rather than a list psycopg quotes id by id (arrays.py).
        ids = value if isinstance(value, list) else list(value)
        if connection.vendor != "postgresql":
            return json.dumps(ids)
        array = int_array_literal(ids)
        return ids if array is None else array

    def get_placeholder(self, value: Any, compiler: Any, connection: Any) -> str:
        """How an INSERT or UPDATE writes a value: the array literal is cast to the column's type."""
        return "%s::bigint[]" if connection.vendor == "postgresql" else "%s"


@ProfileIdsField.register_lookup
class HasProfile(Lookup):
    lookup_name = "has"

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, list[int]]:
        return "%s", [int(value)]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE value = {rhs})", [*lhs_params, *rhs_params]  # noqa: S608

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @> ARRAY[{rhs}]::bigint[]", [*lhs_params, *rhs_params]


class BatchDelivery(models.Model):
    """One request of up to 1,000 people sent by whole-audience work, written pending before the call."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        PARTIAL = "partial", _("Partly rejected")
        FAILED = "failed", _("Failed")
        RETRYING = "retrying", _("Failed for now, will retry")

    class Reason(models.TextChoices):
        ACTIVATION = "activation", _("Activation")
        RENAME = "rename", _("Rename")
        RESYNC = "resync", _("Resync")
        SEGMENT = "segment", _("Segment backfill")

    class Action(models.TextChoices):
        IDENTIFY = "identify", _("Identify")
        SEGMENT_ADD = "segment_add", _("Add to segment")
        SEGMENT_REMOVE = "segment_remove", _("Remove from segment")

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        db_constraint=False,  # a partitioned table's rows go with their months; the connection's deletion cascades
        db_index=False,  # the composite index starting with connection serves
        related_name="batch_deliveries",
        verbose_name=_("connection"),
        help_text=_("The Customer.io workspace."),
    )
    run = models.ForeignKey(
        "connections.ResyncRun",
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="batch_deliveries",
        verbose_name=_("run"),
        help_text=_("The resync or backfill run that sent it, if any."),
    )
    reason = models.CharField(_("reason"), max_length=12, choices=Reason.choices, help_text=_("What caused it."))
    action = models.CharField(_("action"), max_length=16, choices=Action.choices, help_text=_("What was asked."))
    segment_id = models.PositiveIntegerField(
        _("segment"), null=True, blank=True, help_text=_("For a manual segment request: the segment's id.")
    )
    transport = models.CharField(_("transport"), max_length=10, default="v2_batch", help_text=_("v2_batch."))
    attempt = models.PositiveIntegerField(_("attempt"), default=1, help_text=_("1 for the first try."))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING, help_text=_("The outcome.")
    )
    people = models.PositiveIntegerField(_("people"), help_text=_("How many people the request named."))
    profile_ids = ProfileIdsField(_("profiles"), help_text=_("The profiles in the request, in the order of its items."))
    body = models.BinaryField(_("body"), help_text=_("Exactly the JSON POSTed."))
    item_errors = models.JSONField(
        _("item errors"),
        default=dict,
        blank=True,
        help_text=_("For a partly rejected request: position in the request -> Customer.io's error."),
    )
    http_status = models.PositiveSmallIntegerField(
        _("HTTP status"), null=True, blank=True, help_text=_("Customer.io's HTTP answer, if any.")
    )
    response = models.TextField(
        _("response"), blank=True, help_text=_(f"Customer.io's answer, cut at {RESPONSE_MAX_CHARS} characters.")
    )
    error = models.TextField(_("error"), blank=True, help_text=_("Why it failed."))
    duration_ms = models.PositiveIntegerField(
        _("duration (ms)"), null=True, blank=True, help_text=_("How long the request took.")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, help_text=_("When the request started."))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, help_text=_("When it ended."))

    class Meta:
        verbose_name = _("batch request")
        verbose_name_plural = _("batch requests")
        indexes = [
            models.Index(fields=["-created_at"], name="batchdelivery_created"),
            models.Index(fields=["connection", "-created_at"], name="batchdelivery_conn_created"),
            models.Index(fields=["status", "-created_at"], name="batchdelivery_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} of {self.people:,} → {self.connection_id}: {self.status}"
