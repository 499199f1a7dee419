from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ResyncRun(models.Model):
    """A resync of a connection (optionally one audience), with its checkpoint so it can resume."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        INTERRUPTED = "interrupted", _("Interrupted")

    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        related_name="resyncs",
        verbose_name=_("connection"),
        help_text=_("The connection being resynced."),
    )
    audience = models.ForeignKey(
        "connections.Audience",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("audience"),
        help_text=_("Only this audience; empty for every active subscription."),
    )
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.RUNNING, help_text=_("Where it stands.")
    )
    reason = models.CharField(
        _("reason"),
        max_length=12,
        default="resync",
        help_text=_(
            "resync: every member and recorded ex-member; activation or rename: the audience's current members, "
            "queued by a worker because the audience is large."
        ),
    )
    total = models.PositiveIntegerField(_("profiles in all"), default=0, help_text=_("Profiles to send."))
    queued = models.PositiveIntegerField(
        _("profiles done"),
        default=0,
        help_text=_("Profiles queued so far (a resync), or sent so far (an activation or rename, streamed)."),
    )
    last_profile_id = models.BigIntegerField(
        _("checkpoint"), default=0, help_text=_("Profiles up to this id are queued; a restart continues after it.")
    )
    inflight_to = models.BigIntegerField(
        _("in flight up to"),
        null=True,
        blank=True,
        help_text=_(
            "A streamed run's request in flight: profiles above the checkpoint up to this id. While the lease "
            "lasts, changes to them wait, so an older page can never overwrite a newer change."
        ),
    )
    lane_of = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="lanes",
        verbose_name=_("lane of"),
        help_text=_(
            "A large streamed run is split by profile id into lanes that workers send at once: this row carries "
            "one range of that run, with its own checkpoint, mark and lease. Empty: the run itself."
        ),
    )
    lane_end = models.BigIntegerField(
        _("lane ends at"),
        null=True,
        blank=True,
        help_text=_("The last profile id of this row's range (a run split into lanes); empty: no end."),
    )
    started_at = models.DateTimeField(_("started at"), auto_now_add=True, help_text=_("When it started."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("Last progress."))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, help_text=_("When it finished."))
    claimed_until = models.DateTimeField(
        _("claimed until"),
        null=True,
        blank=True,
        help_text=_("A worker is queuing it until then (renewed chunk by chunk); after that the sweep resumes it."),
    )

    class Meta:
        verbose_name = _("resync")
        verbose_name_plural = _("resyncs")
        indexes = [models.Index(fields=["connection", "status"], name="resync_conn_status")]

    def __str__(self) -> str:
        return f"Resync of {self.connection_id} ({self.status})"

    @property
    def whole_run_id(self) -> int:
        """The run this row is part of: itself, or the run it is a lane of."""
        return self.lane_of_id or self.pk
