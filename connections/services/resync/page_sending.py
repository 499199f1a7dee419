"""Sending a streamed page: v2 batches logged one row per request, then the manual segments.

    page (pages.py) -> the people not sendable logged as the change path logs them (skipped,
      cancelled, a Customer.io limit) -> the sendable packed into v2 batches within
      Customer.io's limits -> per batch:
        - in one transaction: the people still here locked (FOR KEY SHARE, the erasure fence of
          delivery_log.log_pending) and the request logged pending, its body as sent
        - POST /api/v2/batch, through the connection's rate limiter -> the answer logged on the
          same row, told to the breaker
        - the people identified who have a manual-segment change: segment requests, one row each

A page is a program (`page_program`): a generator that does its database work itself and yields
each HTTP call for the driver to make (streaming.py runs a few pages' calls at once, in threads,
while every database statement stays on the driver's thread, in order), then receives the answer.

A transient answer (429, 5xx, a timeout) on any request of the page means the page is sent again,
whole, after a backoff: identify and segment calls are idempotent, and the checkpoint stays
before the page until every request of it was answered for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction

from connections.customerio import ratelimit
from connections.customerio.client import (
    BatchResult,
    CustomerIOClient,
    Outcome,
    PreparedBatch,
    SendResult,
    prepare_batch,
)
from connections.customerio.limits import encode_json
from connections.logfmt import logfmt
from connections.models import Connection, ResyncRun
from connections.services.connection import transitions as connection_state
from connections.services.forwarding import batch_log
from connections.services.forwarding.delivery_log import ForwardReport, lock_present, log_unsent
from connections.services.forwarding.payloads import Planned
from connections.services.forwarding.segment_sending import segment_requests
from connections.services.forwarding.transports import V2Batch
from connections.services.resync.pages import Page

log = logging.getLogger("cioaudience.resync")

TRANSIENT = (Outcome.RETRY, Outcome.CREDENTIALS_REJECTED)

Call = Callable[[], Any]  # one HTTP request, made by the driver (in a thread)
Program = Generator[Call, Any, "PageResult"]


@dataclass
class PageResult:
    done: int = 0  # people settled: sent, failed for good, skipped or cancelled
    again: bool = False  # a request must be sent again: the page waits and is sent whole later
    retry_after: float | None = None  # Customer.io's Retry-After, if it gave one


def send_page(
    connection: Connection, run: ResyncRun, page: Page, client: CustomerIOClient, report: ForwardReport, attempt: int
) -> PageResult:
    """The page's program, its calls made here one after another."""
    program = page_program(connection, run, page, client, report, attempt)
    try:
        call = next(program)
        while True:
            call = program.send(call())
    except StopIteration as finished:
        return finished.value


def page_program(
    connection: Connection, run: ResyncRun, page: Page, client: CustomerIOClient, report: ForwardReport, attempt: int
) -> Program:
    result = PageResult()
    result.done += len(log_unsent(connection, page.planned, report))
    sendable = [p for p in page.planned if p.sendable]
    for group in V2Batch().groups(sendable, probe=False):
        present, ref, prepared = _log_pending(connection, run, group, "identify", None, _identify_body, attempt)
        if not present:  # everyone in it was erased since the plan
            result.done += len(group)
            continue
        answer: BatchResult = yield partial(_paced, connection, client.send_batch, prepared)
        identified = _record_batch(connection, run, present, ref, answer)
        report.requests += 1
        report.sent += len(present)
        if answer.overall.outcome in TRANSIENT:
            return _again(result, answer.overall, report, len(present))
        report.succeeded += len(identified)
        report.failed += len(present) - len(identified)
        result.done += len(group)  # those erased since the plan are settled too
        for segment_id, action, id_type, chunk in segment_requests(p for p in identified if p.segment_operations):
            chunk, ref, _ = _log_pending(connection, run, chunk, f"segment_{action}", segment_id, _ids_body, attempt)
            if not chunk:
                continue
            send = client.add_to_segment if action == "add" else client.remove_from_segment
            ids = [p.customer_id for p in chunk]
            answered: SendResult = yield partial(_paced, connection, send, segment_id, ids, id_type)
            batch_log.complete_batch(ref, answered, {})
            connection_state.note_results(connection, [answered])
            _log_request(connection, run, "segment", len(chunk), answered, 0)
            report.requests += 1
            if answered.outcome in TRANSIENT:
                return _again(result, answered, report, 0)
    return result


def _paced(connection: Connection, send: Callable[..., Any], *args: Any) -> Any:
    """One request, once the connection's rate limiter lets it go (shared by every worker)."""
    ratelimit.acquire(connection.pk, connection.rate_limit)
    return send(*args)


def _again(result: PageResult, answer: SendResult | None, report: ForwardReport, people: int) -> PageResult:
    result.again = True
    result.retry_after = answer.retry_after if answer is not None else None
    report.retrying += people
    return result


def _log_pending(
    connection: Connection,
    run: ResyncRun,
    people: list[Planned],
    action: str,
    segment_id: int | None,
    body_of: Callable[[list[Planned]], Any],
    attempt: int,
) -> tuple[list[Planned], batch_log.BatchRef | None, Any]:
    """The people still here, locked (FOR KEY SHARE), and their request logged pending with its body as
    sent; ([], None, None) when nobody is left (erased since the plan)."""
    with transaction.atomic():
        present = lock_present([p.profile_id for p in people])
        people = [p for p in people if p.profile_id in present]
        if not people:
            return [], None, None
        prepared = body_of(people)
        ref = batch_log.log_batch_pending(
            connection.pk,
            run_id=run.whole_run_id,
            reason=run.reason,
            action=action,
            segment_id=segment_id,
            profile_ids=[p.profile_id for p in people],
            body=prepared.body if isinstance(prepared, PreparedBatch) else prepared,
            attempt=attempt,
        )
    return people, ref, prepared


def _identify_body(people: list[Planned]) -> PreparedBatch:
    return prepare_batch([(p.identifier, p.attributes) for p in people])


def _ids_body(people: list[Planned]) -> bytes:
    return encode_json({"ids": [p.customer_id for p in people]})


def _record_batch(
    connection: Connection, run: ResyncRun, group: list[Planned], ref: batch_log.BatchRef, answer: BatchResult
) -> list[Planned]:
    """Log the batch's answer, tell the breaker; returns the people Customer.io accepted."""
    accepted = answer.overall.outcome is Outcome.SUCCEEDED
    item_errors = {i.index: i.error for i in answer.items if i.outcome is not Outcome.SUCCEEDED} if accepted else {}
    batch_log.complete_batch(ref, answer.overall, item_errors)
    connection_state.note_results(connection, [answer.overall])
    _log_request(connection, run, "identify", len(group), answer.overall, len(item_errors))
    return [p for p, item in zip(group, answer.items, strict=True) if item.outcome is Outcome.SUCCEEDED]


def _log_request(
    connection: Connection, run: ResyncRun, action: str, people: int, result: SendResult, rejected: int
) -> None:
    """One `key=value` line per request (not per person: a page is a thousand people)."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            logfmt(
                "batch",
                connection=connection.pk,
                run=run.whole_run_id,
                action=action,
                people=people,
                outcome=result.outcome.value,
                http_status=result.http_status,
                rejected=rejected or None,
                error=result.error or None,
            )
        )
