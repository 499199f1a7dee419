"""The shared shape of the prune commands: `--older-than AGE [--dry-run] [--batch-size N]`.

Each command names what it deletes and the two retention services that count and delete it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.management.lookup import positive_int
from connections.services import retention


def age(value: str) -> timedelta:
    try:
        return retention.parse_age(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class PruneCommand(BaseCommand):
    noun = "rows"  # what is deleted, plural: "deliveries", "Firehose messages"
    dated = "created"  # the verb of its timestamp: "created", "received"
    count_prunable: Callable[[timedelta], tuple[datetime, int]]
    prune: Callable[..., retention.PruneResult]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=age,
            required=True,
            metavar="AGE",
            help=f"How old {self.noun} must be to go: a number and d (days), h (hours) or m (minutes), e.g. 30d.",
        )
        parser.add_argument("--dry-run", action="store_true", help=f"Only count the {self.noun} that would go.")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=retention.BATCH_SIZE,
            metavar="N",
            help=f"Rows deleted per transaction (default {retention.BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than: timedelta = options["older_than"]
        if options["dry_run"]:
            cutoff, count = type(self).count_prunable(older_than)
            self.stdout.write(
                f"Dry run: {count} {self.noun} {self.dated} before {cutoff:%Y-%m-%d %H:%M:%S %Z} would be deleted. "
                "Nothing was deleted."
            )
            return
        started = time.monotonic()
        verbose = options["verbosity"] >= 2

        def report(count: int) -> None:
            if verbose:
                self.stdout.write(f"  deleted a batch of {count}")

        result = type(self).prune(older_than, batch_size=options["batch_size"], on_batch=report)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {result.deleted} {self.noun} {self.dated} before {result.cutoff:%Y-%m-%d %H:%M:%S %Z} "
                f"in {result.batches} batches ({time.monotonic() - started:.1f}s)."
            )
        )
