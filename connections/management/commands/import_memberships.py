"""`manage.py import_memberships FILE --audience ID`: memberships of one audience from CSV or JSON Lines.

Memory stays constant whatever the size of the file, and a bad line leaves nothing applied:

1. A first streaming pass validates every line and stops at the first bad line with its
   number, before anything is written. The rows it checked go to temporary files (a
   `PartitionedSpool`: --jobs `RowSpool`s, one JSON array per batch, each person's rows in the
   same one), never to memory.
2. A second pass applies the spooled rows in batches of --batch-size lines, each in its own
   transaction: on PostgreSQL by `import_copy` (COPY into a temporary table, then set-based
   statements), elsewhere by one `apply_changes` call. Changes are forwarded like any other,
   and workers start sending while the import runs. It applies exactly the rows that were
   checked, without parsing the file again (half the CPU of reading it twice), and the same
   way for standard input, which cannot be read twice. On PostgreSQL the spool's parts are
   applied in parallel, one connection each (`import_parallel`): the server's work (index
   maintenance, the foreign-key checks at commit) is most of the time.

(One transaction around the whole file would be all-or-nothing too, but would hold its locks
for the whole import and let no worker forward anything until the very end.) With
--skip-invalid, bad lines are reported and skipped, so a single pass validates and applies.

Should the database fail during the second pass, the batches before it stay applied; running
the import again is safe, as applying a state that is already stored changes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from tqdm import tqdm

from connections.models import Audience
from connections.services.imports import parallel as import_parallel
from connections.services.imports import pg_copy as import_copy
from connections.services.imports import progress as import_progress
from connections.services.imports.reading import (
    BadHeader,
    BadLine,
    LineSource,
    PartitionedSpool,
    Row,
    apply_rows,
    csv_rows,
    jsonl_rows,
)
from connections.services.ingest.memberships import ApplyResult

FORMATS: dict[str, Callable[[LineSource], Iterator[Row | BadLine]]] = {"csv": csv_rows, "jsonl": jsonl_rows}
PARALLEL_JOBS = 2  # the machines this runs on have 2 cores; PostgreSQL's share of the work is most of it
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class Command(BaseCommand):
    help = (
        "Import memberships of one audience from a CSV file (customer_id,email,first_name,last_name,action) "
        "or JSON Lines (objects with those keys); action is add or delete. Changes are forwarded to every "
        "connection with an active subscription to the audience."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The file to import, or - for standard input.")
        parser.add_argument(
            "--audience", type=int, required=True, help="The audience's id in the source system (audience_id)."
        )
        parser.add_argument(
            "--format", choices=sorted(FORMATS), help="csv or jsonl; by default guessed from the file's extension."
        )
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Report and skip bad lines instead of stopping at the first."
        )
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="Lines applied per transaction (default 5000)."
        )
        parser.add_argument(
            "--jobs",
            type=int,
            help="Connections applying the checked lines at once, each person's lines always by the same one "
            f"(default {PARALLEL_JOBS} on PostgreSQL, 1 elsewhere; always 1 inside a transaction or with "
            "--skip-invalid).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["file"]
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["jobs"] is not None and options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1.")
        jobs = self._jobs(options["jobs"])
        audience = Audience.objects.filter(audience_id=options["audience"]).first()
        if audience is None:
            raise CommandError(
                f"No audience has audience_id {options['audience']}; it must exist first "
                "(subscribe it from mParticle or create it in the admin)."
            )
        read_rows = FORMATS[self._format(path, options["format"])]
        self.run = import_progress.ImportTracker(audience, path)  # progress for /metrics and the admin's overview
        completed = False
        try:
            with ExitStack() as stack:
                stream = self._open(path, stack)
                if options["skip_invalid"]:
                    totals = self._apply_skipping(read_rows, stream, audience, batch_size)
                else:
                    spool = PartitionedSpool(batch_size, jobs)
                    stack.callback(spool.close)
                    self._validate(read_rows, stream, path, spool)
                    self.run.set_total(spool.rows)
                    totals = self._apply_checked(spool, audience)
            completed = True
        finally:
            self.run.finish(completed=completed)
        self._summary(totals, audience)

    # --- the passes -----------------------------------------------------------------

    def _validate(
        self,
        read_rows: Callable[[LineSource], Iterator[Row | BadLine]],
        stream: IO[bytes],
        path: str,
        spool: PartitionedSpool,
    ) -> None:
        """Pass 1: every line checked, nothing written to the database; the rows go to `spool`."""
        with self._progress(stream, "Checking") as bar:
            try:
                for row in read_rows(LineSource(stream, bar.update)):
                    if isinstance(row, BadLine):
                        raise CommandError(
                            f"{path}, line {row.line}: {row.reason}. Nothing was imported "
                            "(--skip-invalid skips bad lines)."
                        )
                    spool.add(row)
            except BadHeader as exc:
                raise CommandError(f"{path}, {exc}. Nothing was imported.") from None

    def _apply_checked(self, spool: PartitionedSpool, audience: Audience) -> Totals:
        """Pass 2: the checked rows applied batch by batch (each part of the spool by its own connection)."""
        totals = Totals()
        with self._bar(spool.size(), "Importing") as bar:
            if len(spool.parts) == 1:
                for batch in spool.parts[0].batches(bar.update):
                    totals.lines += len(batch)
                    totals.add(apply_rows(batch, audience))
                    self.run.advance(done=totals.lines)
                return totals

            def applied(lines: int, read: int, result: ApplyResult) -> None:
                bar.update(read)
                totals.lines += lines
                totals.add(result)
                self.run.advance(done=totals.lines)

            import_parallel.apply_parts(spool.parts, lambda batch: apply_rows(batch, audience), applied)
        return totals

    def _apply_skipping(
        self,
        read_rows: Callable[[LineSource], Iterator[Row | BadLine]],
        stream: IO[bytes],
        audience: Audience,
        batch_size: int,
    ) -> Totals:
        """The only pass with --skip-invalid: bad lines reported and skipped, rows applied in batches."""
        totals = Totals()
        batch: list[Row] = []
        with self._progress(stream, "Importing") as bar:
            try:
                for row in read_rows(LineSource(stream, bar.update)):
                    totals.lines += 1
                    if isinstance(row, BadLine):
                        totals.skipped += 1
                        with tqdm.external_write_mode(file=sys.stderr):
                            self.stderr.write(f"line {row.line}: {row.reason}; skipped")
                        continue
                    batch.append(row)
                    if len(batch) >= batch_size:
                        totals.add(apply_rows(batch, audience))
                        self.run.advance(done=totals.lines - totals.skipped, skipped=totals.skipped)
                        batch = []
            except BadHeader as exc:
                raise CommandError(f"{exc}. Nothing was imported.") from None
            if batch:
                totals.add(apply_rows(batch, audience))
            self.run.advance(done=totals.lines - totals.skipped, skipped=totals.skipped)
        return totals

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _jobs(given: int | None) -> int:
        # Other connections cannot see what the caller's open transaction wrote (nor SQLite take
        # two writers at once): one connection then, the caller's.
        if connection.in_atomic_block or not import_copy.available():
            return 1
        return PARALLEL_JOBS if given is None else given

    @staticmethod
    def _format(path: str, given: str | None) -> str:
        if given:
            return given
        if path == "-":
            raise CommandError("Give --format (csv or jsonl) when reading standard input.")
        guessed = EXTENSIONS.get(Path(path).suffix.lower())
        if guessed is None:
            raise CommandError(f"Cannot tell the format of {path!r} from its extension; give --format csv or jsonl.")
        return guessed

    @staticmethod
    def _open(path: str, stack: ExitStack) -> IO[bytes]:
        if path == "-":
            return sys.stdin.buffer
        try:
            return stack.enter_context(open(path, "rb"))
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None

    @classmethod
    def _progress(cls, stream: IO[bytes], what: str) -> tqdm:
        """A bytes-based bar on standard error; with a size known (files) it has an ETA."""
        try:
            size: int | None = os.fstat(stream.fileno()).st_size if stream.seekable() else None
        except (OSError, ValueError):
            size = None
        return cls._bar(size, what)

    @staticmethod
    def _bar(size: int | None, what: str) -> tqdm:
        return tqdm(
            total=size or None,
            desc=what,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            mininterval=0.5,
            leave=True,
        )

    def _summary(self, totals: Totals, audience: Audience) -> None:
        self.stdout.write(
            self.style.SUCCESS(f"Imported memberships of {audience}:")
            + f"\n  lines read:           {totals.lines}"
            + f"\n  profiles created:     {totals.result.profiles_created}"
            + f"\n  profiles updated:     {totals.result.profiles_updated}"
            + f"\n  memberships changed:  {totals.result.memberships_changed}"
            + f"\n  forwards queued:      {totals.result.forwards_queued}"
            + f"\n  lines skipped:        {totals.skipped}"
        )


class Totals:
    def __init__(self) -> None:
        self.lines = 0
        self.skipped = 0
        self.result = ApplyResult()

    def add(self, result: ApplyResult) -> None:
        self.result.profiles_created += result.profiles_created
        self.result.profiles_updated += result.profiles_updated
        self.result.memberships_changed += result.memberships_changed
        self.result.forwards_queued += result.forwards_queued
