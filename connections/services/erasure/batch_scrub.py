"""Erasing a person from the batch log: their place in each request that named them, nothing else.

    erase (local.py, in its transaction, the profiles locked)
      -> the batch rows naming the profiles (GIN: cost per row that holds them, not per table)
      -> each locked, then rewritten: their id in profile_ids replaced by ERASED_ID (0), their item
         in the body by null (the identify action, or the id of a segment request), their item
         error removed; their values replaced in the response and error texts

The row stays for the other people of the request, at the same positions: their items, their
errors and Customer.io's batch_index numbers still agree, and so does an answer that arrives
after the erasure for a request in flight (forwarding/batch_log.complete_batch leaves out the
errors of erased positions).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import reduce
from operator import or_

from django.db.models import Q

from connections.models import BatchDelivery
from connections.models.batch_delivery import ERASED_ID
from connections.scrubbing import scrub_text
from connections.services.erasure import rules

ITEMS_KEY = {"identify": "batch", "segment_add": "ids", "segment_remove": "ids"}


def naming(profile_ids: Collection[int]) -> Q:
    return reduce(or_, (Q(profile_ids__has=pk) for pk in profile_ids), Q(pk__in=[]))


def count_batch_requests(profile_ids: Collection[int]) -> int:
    """How many batch requests name any of the profiles."""
    return BatchDelivery.objects.filter(naming(profile_ids)).count() if profile_ids else 0


def scrub_batch_requests(profile_ids: Collection[int], values: list[str]) -> int:
    """Take the profiles out of every batch request that names them; returns the rows rewritten."""
    if not profile_ids:
        return 0
    erased = set(profile_ids)
    rows = BatchDelivery.objects.filter(naming(erased)).select_for_update().order_by("created_at", "id")
    count = 0
    for row in rows:
        gone = {i for i, pk in enumerate(row.profile_ids) if pk in erased}
        body = json.loads(bytes(row.body))
        key = ITEMS_KEY[row.action]
        body[key] = [None if i in gone else item for i, item in enumerate(body[key])]
        BatchDelivery.objects.filter(id=row.id, created_at=row.created_at).update(
            profile_ids=[ERASED_ID if i in gone else pk for i, pk in enumerate(row.profile_ids)],
            people=row.people - len(gone),
            body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
            item_errors={k: v for k, v in (row.item_errors or {}).items() if int(k) not in gone},
            response=_scrubbed(row.response, values),
            error=_scrubbed(row.error, values),
        )
        count += 1
    return count


def _scrubbed(text: str, values: list[str]) -> str:
    return scrub_text(text, values, rules.ERASED)
