"""``manage.py prune_deliveries --older-than 30d``: delete old forwarding-log rows, in small batches."""

from __future__ import annotations

from connections.management.pruning import PruneCommand
from connections.services.erasure import retention


class Command(PruneCommand):
    help = (
        "Delete forwarding-log rows (deliveries) older than --older-than, in batches that each run in their own "
        "short transaction, so workers writing the log are never blocked for long. A daily task does the same "
        "with DELIVERY_RETENTION_DAYS."
    )
    kind = retention.DELIVERIES
