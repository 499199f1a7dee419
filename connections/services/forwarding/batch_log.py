"""The compact forwarding log of whole-audience work: one row per request (issue 29).

    streamed batch (activation, rename, resync, segment backfill)
      -> log_batch_pending: one INSERT in the sender's transaction, before the HTTP call
      -> Customer.io client -> SendResult (+ a 207's item errors by position)
      -> complete_batch: one UPDATE of that row
    admin -> batch_entries_for_profile: a person's rows, newest first, with their own item

The row holds who was in the request (profile_ids, in the order of the body's items), the exact
bytes POSTed and the answer; nothing per person is written. A person's item is found by their
position in profile_ids: the body is {"batch": [...]} for identify, {"ids": [...]} for segments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from connections.customerio.client import Outcome, SendResult
from connections.models import BatchDelivery
from connections.models.delivery import RESPONSE_MAX_CHARS

Status = BatchDelivery.Status
ENTRIES_PER_PAGE = 50
# The list in the body that holds one item per person, by action.
ITEMS_KEY = {"identify": "batch", "segment_add": "ids", "segment_remove": "ids"}


@dataclass(frozen=True)
class BatchRef:
    id: int
    created_at: datetime


def log_batch_pending(
    connection_id: int,
    *,
    run_id: int | None,
    reason: str,
    action: str,
    segment_id: int | None,
    profile_ids: Sequence[int],
    body: bytes,
    attempt: int = 1,
) -> BatchRef:
    """Insert the row as pending, in the caller's transaction (before the HTTP call); one INSERT."""
    if action not in ITEMS_KEY:
        raise ValueError(f"unknown action {action!r}; expected one of {sorted(ITEMS_KEY)}")
    row = BatchDelivery.objects.create(
        connection_id=connection_id,
        run_id=run_id,
        reason=reason,
        action=action,
        segment_id=segment_id,
        attempt=attempt,
        status=Status.PENDING,
        people=len(profile_ids),
        profile_ids=profile_ids,
        body=bytes(body),
        created_at=timezone.now(),
    )
    return BatchRef(id=row.pk, created_at=row.created_at)


def batch_status(result: SendResult, item_errors: Mapping[int, str]) -> str:
    """The row's status for Customer.io's answer."""
    if result.outcome is Outcome.SUCCEEDED:
        return Status.PARTIAL if item_errors else Status.SUCCEEDED
    if result.outcome is Outcome.RETRY:
        return Status.RETRYING
    return Status.FAILED


def complete_batch(ref: BatchRef, result: SendResult, item_errors: Mapping[int, str]) -> None:
    """Record the answer: status from result.outcome (connections.customerio.client.Outcome):
    SUCCEEDED with no item errors -> succeeded; SUCCEEDED with item errors -> partial;
    FAILED / CREDENTIALS_REJECTED -> failed; RETRY -> retrying (error ends "Will retry.").
    http_status, response (cut), duration_ms, error, finished_at. One UPDATE by (id, created_at)."""
    status = batch_status(result, item_errors)
    error = result.error
    if status == Status.RETRYING:
        error = f"{error} Will retry." if error else "Will retry."
    # created_at too: on PostgreSQL it picks the one monthly partition to look in.
    BatchDelivery.objects.filter(id=ref.id, created_at=ref.created_at).update(
        status=status,
        item_errors={str(position): text for position, text in item_errors.items()},
        http_status=result.http_status,
        response=result.response_text[:RESPONSE_MAX_CHARS],
        duration_ms=result.duration_ms,
        error=error,
        finished_at=timezone.now(),
    )


@dataclass(frozen=True)
class BatchEntry:
    """One request as it concerns one person: the row (without its body), and their part of it."""

    row: BatchDelivery
    position: int  # 0-based, in profile_ids and in the body's list
    item: Any  # what was sent for them: their identify action, or their id in a segment request
    item_error: str  # Customer.io's error for their item, "" when it named none

    @property
    def outcome_for_person(self) -> str:
        """Their item's error when Customer.io rejected it, else the request's status."""
        if self.item_error:
            return Status.FAILED
        return Status.SUCCEEDED if self.row.status == Status.PARTIAL else self.row.status


@dataclass(frozen=True)
class BatchEntriesPage:
    entries: list[BatchEntry]
    page: int
    has_next: bool


def batch_entries_for_profile(profile_id: int, *, page: int = 1, per_page: int = ENTRIES_PER_PAGE) -> BatchEntriesPage:
    """The batch requests naming a profile, newest first, `per_page` a page (no COUNT: a next page or not)."""
    page = max(1, page)
    rows = BatchDelivery.objects.filter(profile_ids__has=profile_id).order_by("-created_at", "-id")
    start = (page - 1) * per_page
    found = _window(rows, profile_id, start, start + per_page + 1)
    entries = [_entry(row) for row in found]
    return BatchEntriesPage(entries=entries[:per_page], page=page, has_next=len(entries) > per_page)


def _window(rows: QuerySet[BatchDelivery], profile_id: int, start: int, stop: int) -> list[BatchDelivery]:
    """Rows start..stop, each with `position` and `item_json` (the person's item, as JSON text)."""
    if connections[router.db_for_read(BatchDelivery)].vendor == "postgresql":
        # The item is cut out of the body in the database (json, not jsonb: parsed only up to the
        # item), so neither the 100-300 KB body nor the 1,000 ids come back to Python.
        position = "array_position(profile_ids, %s) - 1"
        return list(
            rows.defer("body", "profile_ids").annotate(
                position=RawSQL(position, [profile_id]),  # noqa: S611 (constant SQL, the id a parameter)
                item_json=RawSQL(  # noqa: S611
                    "(convert_from(body, 'UTF8')::json"
                    f" -> (CASE WHEN action = 'identify' THEN 'batch' ELSE 'ids' END) -> ({position}))::text",
                    [profile_id],
                ),
            )[start:stop]
        )
    found = list(rows[start:stop])
    for row in found:
        row.position = row.profile_ids.index(profile_id)  # type: ignore[attr-defined]
        items = json.loads(bytes(row.body)).get(ITEMS_KEY.get(row.action, "batch"), [])
        row.item_json = json.dumps(items[row.position]) if row.position < len(items) else None  # type: ignore[attr-defined]
    return found


def _entry(row: BatchDelivery) -> BatchEntry:
    position = row.position  # type: ignore[attr-defined]
    item_json = row.item_json  # type: ignore[attr-defined]
    return BatchEntry(
        row=row,
        position=position,
        item=json.loads(item_json) if item_json is not None else None,
        item_error=str((row.item_errors or {}).get(str(position), "")),
    )
