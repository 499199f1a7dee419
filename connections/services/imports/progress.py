"""How far each `import_memberships` run got, saved as it goes, for /metrics and the admin's overview.

The run's row is written with the first applied batch: an import refused for bad input
leaves nothing behind, like every other refused input.
"""

from __future__ import annotations

from django.utils import timezone

from connections.models import Audience, ImportRun


class ImportTracker:
    def __init__(self, audience: Audience, source: str) -> None:
        self.audience = audience
        self.source = source[:255]
        self.lines_total: int | None = None
        self.run: ImportRun | None = None

    def set_total(self, lines: int) -> None:
        """The file's data lines, once a first pass has counted them."""
        self.lines_total = lines
        if self.run is not None:
            ImportRun.objects.filter(pk=self.run.pk).update(lines_total=lines, updated_at=timezone.now())

    def advance(self, *, done: int, skipped: int = 0) -> None:
        """The lines applied (committed) and skipped so far."""
        if self.run is None:
            self.run = ImportRun.objects.create(
                audience=self.audience, source=self.source, lines_total=self.lines_total, lines_done=done,
                lines_skipped=skipped,
            )
            return
        ImportRun.objects.filter(pk=self.run.pk).update(
            lines_done=done, lines_skipped=skipped, updated_at=timezone.now()
        )

    def finish(self, *, completed: bool) -> None:
        """Done, or stopped before the end (an error, Ctrl-C): either way it no longer runs."""
        if self.run is None:
            return
        status = ImportRun.Status.DONE if completed else ImportRun.Status.FAILED
        now = timezone.now()
        ImportRun.objects.filter(pk=self.run.pk).update(status=status, finished_at=now, updated_at=now)
