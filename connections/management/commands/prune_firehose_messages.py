"""``manage.py prune_firehose_messages --older-than 30d``: delete old stored Firehose messages."""

from __future__ import annotations

import argparse
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
        "Delete stored Firehose messages (kept for replay protection: a message id seen again within the window "
        "changes nothing) received more than --older-than ago, in short batches. A daily task does the same with "
        "FIREHOSE_RETENTION_DAYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=age,
            required=True,
            metavar="AGE",
            help="How old a message must be to go: a number and d (days), h (hours) or m (minutes), e.g. 30d.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count the messages that would be deleted.")
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
            cutoff, count = retention.count_prunable_firehose_messages(older_than)
            self.stdout.write(
                f"Dry run: {count} Firehose messages received before {cutoff:%Y-%m-%d %H:%M:%S %Z} would be "
                "deleted. Nothing was deleted."
            )
            return
        result = retention.prune_firehose_messages(older_than, batch_size=options["batch_size"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {result.deleted} Firehose messages received before "
                f"{result.cutoff:%Y-%m-%d %H:%M:%S %Z} in {result.batches} batches."
            )
        )
