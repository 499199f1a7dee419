"""The shared shape of the prune commands: `--older-than AGE [--dry-run] [--batch-size N]`.

Each command names the kind of row it deletes (`retention.KeptRows`: its words, how to count and prune it).
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.management.lookup import add_rows_per_transaction
from connections.services.erasure import retention


def age(value: str) -> timedelta:
    try:
        return retention.parse_age(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class PruneCommand(BaseCommand):
    kind: retention.KeptRows

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=age,
            required=True,
            metavar="AGE",
            help=f"How old {self.kind.noun} must be to go: a number and d (days), h (hours) or m (minutes), e.g. 30d.",
        )
        parser.add_argument("--dry-run", action="store_true", help=f"Only count the {self.kind.noun} that would go.")
        add_rows_per_transaction(parser, "--batch-size", retention.BATCH_SIZE, "Rows deleted per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        kind: retention.KeptRows | None = self.kind
        while kind is not None:
            self.prune(kind, options)
            kind = kind.companion

    def prune(self, kind: retention.KeptRows, options: dict[str, Any]) -> None:
        older_than: timedelta = options["older_than"]
        what = f"{kind.noun} {kind.dated}"
        if options["dry_run"]:
            cutoff, count = kind.count_prunable(older_than)
            self.stdout.write(
                f"Dry run: {count} {what} before {cutoff:%Y-%m-%d %H:%M:%S %Z} would be deleted. Nothing was deleted."
            )
            return
        started = time.monotonic()
        verbose = options["verbosity"] >= 2

        def report(count: int) -> None:
            if verbose:
                self.stdout.write(f"  deleted a batch of {count}")

        result = kind.prune(older_than, batch_size=options["batch_size"], on_batch=report)
        dropped = f" Dropped whole months: {', '.join(result.partitions_dropped)}." if result.partitions_dropped else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {result.deleted} {what} before {result.cutoff:%Y-%m-%d %H:%M:%S %Z} "
                f"in {result.batches} batches ({time.monotonic() - started:.1f}s).{dropped}"
            )
        )
