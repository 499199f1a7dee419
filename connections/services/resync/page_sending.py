"""Sending a streamed page: v2 batches logged one row per request, then the manual segments.

    page (pages.py) -> the people not sendable logged as the change path logs them (skipped,
      cancelled, a Customer.io limit) -> the sendable packed into v2 batches within
      Customer.io's limits -> per batch, through the connection's rate limiter:
        - in one transaction: the people still here locked (FOR KEY SHARE, the erasure fence of
          delivery_log.log_pending) and the request logged pending, its body as sent
        - POST /api/v2/batch -> the answer logged on the same row, told to the breaker
        - the people identified who have a manual-segment change: segment requests, one row each

A transient answer (429, 5xx, a timeout) on any request of the page means the page is sent again,
whole, after a backoff: identify and segment calls are idempotent, and the checkpoint stays
before the page until every request of it was answered for good.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from connections.customerio import ratelimit
from connections.customerio.client import CustomerIOClient, Outcome, SendResult, prepare_batch
from connections.customerio.limits import encode_json
from connections.logfmt import logfmt
from connections.models import Connection, ResyncRun
from connections.services.connection import transitions as connection_state
from connections.services.forwarding import batch_log
from connections.services.forwarding.delivery_log import ForwardReport, lock_present, log_unsent
from connections.services.forwarding.payloads import Planned
from connections.services.forwarding.segment_sending import send_segment_operations
from connections.services.forwarding.transports import V2Batch
from connections.services.resync.pages import Page

log = logging.getLogger("cioaudience.resync")

TRANSIENT = (Outcome.RETRY, Outcome.CREDENTIALS_REJECTED)


@dataclass
class PageResult:
    done: int = 0  # people settled: sent, failed for good, skipped or cancelled
    again: bool = False  # a request must be sent again: the page waits and is sent whole later
    retry_after: float | None = None  # Customer.io's Retry-After, if it gave one


def send_page(
    connection: Connection, run: ResyncRun, page: Page, client: CustomerIOClient, report: ForwardReport, attempt: int
) -> PageResult:
    result = PageResult()
    unsent = log_unsent(connection, page.planned, report)
    result.done += len(unsent)
    sendable = [p for p in page.planned if p.sendable]
    for group in V2Batch().groups(sendable, probe=False):
        ratelimit.acquire(connection.pk, connection.rate_limit)
        sent = _send_batch(connection, run, group, client, attempt)
        if sent is None:  # everyone in it was erased since the plan
            result.done += len(group)
            continue
        answer, identified, people = sent
        report.requests += 1
        report.sent += people
        connection_state.note_results(connection, [answer])
        if answer.outcome in TRANSIENT:
            return _again(result, answer, report, people)
        report.succeeded += len(identified)
        report.failed += people - len(identified)
        result.done += len(group)  # those erased since the plan are settled too
        with_segments = [p for p in identified if p.segment_operations]
        if with_segments:
            log_to = BatchSegmentLog(connection, run, attempt)
            if send_segment_operations(connection, client, with_segments, report, log=log_to):
                return _again(result, log_to.last_transient, report, 0)
    return result


def _again(result: PageResult, answer: SendResult | None, report: ForwardReport, people: int) -> PageResult:
    result.again = True
    result.retry_after = answer.retry_after if answer is not None else None
    report.retrying += people
    return result


def _send_batch(
    connection: Connection, run: ResyncRun, group: list[Planned], client: CustomerIOClient, attempt: int
) -> tuple[SendResult, list[Planned], int] | None:
    """One v2 batch: logged, sent, answered. Returns the answer, the people identified and how many
    were sent; None when nobody of the group is left to send."""
    with transaction.atomic():
        present = lock_present([p.profile_id for p in group])
        group = [p for p in group if p.profile_id in present]  # erased since the plan: not sent
        if not group:
            return None
        prepared = prepare_batch([(p.identifier, p.attributes) for p in group])
        ref = batch_log.log_batch_pending(
            connection.pk,
            run_id=run.pk,
            reason=run.reason,
            action="identify",
            segment_id=None,
            profile_ids=[p.profile_id for p in group],
            body=prepared.body,
            attempt=attempt,
        )
    answer = client.send_batch(prepared)
    item_errors = (
        {item.index: item.error for item in answer.items if item.outcome is not Outcome.SUCCEEDED}
        if answer.overall.outcome is Outcome.SUCCEEDED
        else {}
    )
    batch_log.complete_batch(ref, answer.overall, item_errors)
    _log_request(connection, run, "identify", len(group), answer.overall, len(item_errors))
    identified = [p for p, item in zip(group, answer.items, strict=True) if item.outcome is Outcome.SUCCEEDED]
    return answer.overall, identified, len(group)


class BatchSegmentLog:
    """A streamed page's segment requests: one batch-log row per request (segment_sending.SegmentLog)."""

    def __init__(self, connection: Connection, run: ResyncRun, attempt: int) -> None:
        self.connection, self.run, self.attempt = connection, run, attempt
        self.last_transient: SendResult | None = None

    def pending(self, chunk: list[Planned], kind: str, segment_id: int) -> tuple[list[Planned], object]:
        with transaction.atomic():
            present = lock_present([p.profile_id for p in chunk])
            chunk = [p for p in chunk if p.profile_id in present]
            if not chunk:
                return chunk, None
            ref = batch_log.log_batch_pending(
                self.connection.pk,
                run_id=self.run.pk,
                reason=self.run.reason,
                action=kind,
                segment_id=segment_id,
                profile_ids=[p.profile_id for p in chunk],
                body=encode_json({"ids": [p.customer_id for p in chunk]}),
                attempt=self.attempt,
            )
        return chunk, ref

    def complete(self, handle: object, result: SendResult, chunk: list[Planned]) -> None:
        assert isinstance(handle, batch_log.BatchRef)
        batch_log.complete_batch(handle, result, {})
        if result.outcome in TRANSIENT:
            self.last_transient = result
        _log_request(self.connection, self.run, "segment", len(chunk), result, 0)


def _log_request(
    connection: Connection, run: ResyncRun, action: str, people: int, result: SendResult, rejected: int
) -> None:
    """One `key=value` line per request (not per person: a page is a thousand people)."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            logfmt(
                "batch",
                connection=connection.pk,
                run=run.pk,
                action=action,
                people=people,
                outcome=result.outcome.value,
                http_status=result.http_status,
                rejected=rejected or None,
                error=result.error or None,
            )
        )
