from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ImportRun(models.Model):
    """One run of `manage.py import_memberships`: how far it got, for /metrics and the admin's overview."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Stopped before the end")

    audience = models.ForeignKey(
        "connections.Audience",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("audience"),
        help_text=_("The audience whose memberships are imported."),
    )
    source = models.CharField(_("file"), max_length=255, help_text=_("The file's name (\"-\" for standard input)."))
    status = models.CharField(
        _("status"), max_length=8, choices=Status.choices, default=Status.RUNNING, help_text=_("Where it stands.")
    )
    lines_total = models.PositiveBigIntegerField(
        _("lines in all"), null=True, blank=True, help_text=_("Data lines in the file, once known.")
    )
    lines_done = models.PositiveBigIntegerField(_("lines applied"), default=0, help_text=_("Lines applied so far."))
    lines_skipped = models.PositiveBigIntegerField(
        _("lines skipped"), default=0, help_text=_("Bad lines skipped (with --skip-invalid).")
    )
    started_at = models.DateTimeField(_("started at"), auto_now_add=True, help_text=_("When it started."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, help_text=_("Last progress."))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, help_text=_("When it ended."))

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        indexes = [models.Index(fields=["-started_at"], name="import_run_started")]

    def __str__(self) -> str:
        return f"Import of {self.source} ({self.status})"
