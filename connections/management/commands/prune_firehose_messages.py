"""``manage.py prune_firehose_messages --older-than 30d``: delete old stored Firehose messages."""

from __future__ import annotations

from connections.management.pruning import PruneCommand
from connections.services.erasure import retention


class Command(PruneCommand):
    help = (
        "Delete stored Firehose messages (kept for replay protection: a message id seen again within the window "
        "changes nothing) received more than --older-than ago, in short batches. A daily task does the same with "
        "FIREHOSE_RETENTION_DAYS."
    )
    kind = retention.FIREHOSE_MESSAGES
