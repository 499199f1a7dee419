"""``manage.py prune_deliveries --older-than 30d``: delete old forwarding-log rows, in small batches."""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.management.lookup import positive_int
from connections.services import retention


def age(value: str) -> timedelta:
    try:
        return retention.parse_age(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class Command(BaseCommand):
    help = (
        "Delete forwarding-log rows (deliveries) older than --older-than, in batches that each run in their own "
        "short transaction, so workers writing the log are never blocked for long. A daily task does the same "
        "with DELIVERY_RETENTION_DAYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=age,
            required=True,
            metavar="AGE",
            help="How old a row must be to go: a number and d (days), h (hours) or m (minutes), e.g. 30d, 12h, 90m.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count the rows that would be deleted.")
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
            cutoff, count = retention.count_prunable(older_than)
            self.stdout.write(
                f"Dry run: {count} deliveries created before {cutoff:%Y-%m-%d %H:%M:%S %Z} would be deleted. "
                "Nothing was deleted."
            )
            return
        started = time.monotonic()
        verbose = options["verbosity"] >= 2

        def report(count: int) -> None:
            if verbose:
                self.stdout.write(f"  deleted a batch of {count}")

        result = retention.prune_deliveries(older_than, batch_size=options["batch_size"], on_batch=report)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {result.deleted} deliveries created before {result.cutoff:%Y-%m-%d %H:%M:%S %Z} "
                f"in {result.batches} batches ({time.monotonic() - started:.1f}s)."
            )
        )
