"""Batch bodies as the streaming senders build them, for the batch log's tests."""

from __future__ import annotations

import json

from connections.customerio.client import Outcome, SendResult
from connections.customerio.limits import v2_action
from connections.models import Profile
from connections.services.forwarding.batch_log import BatchRef, log_batch_pending


def identify_body(profiles: list[Profile]) -> bytes:
    actions = [
        v2_action(p.customer_id, {"email": p.email, "first_name": p.first_name, "audience_vip": "true"})
        for p in profiles
    ]
    return json.dumps({"batch": actions}).encode()


def segment_body(profiles: list[Profile]) -> bytes:
    return json.dumps({"ids": [p.customer_id for p in profiles]}).encode()


def log_identify(connection, profiles: list[Profile], *, reason: str = "activation") -> BatchRef:
    return log_batch_pending(
        connection.pk,
        run_id=None,
        reason=reason,
        action="identify",
        segment_id=None,
        profile_ids=[p.pk for p in profiles],
        body=identify_body(profiles),
    )


def log_segment_add(connection, profiles: list[Profile], segment_id: int = 7) -> BatchRef:
    return log_batch_pending(
        connection.pk,
        run_id=None,
        reason="segment",
        action="segment_add",
        segment_id=segment_id,
        profile_ids=[p.pk for p in profiles],
        body=segment_body(profiles),
    )


def result(outcome: Outcome, http_status: int | None = 200, response: str = "{}", error: str = "") -> SendResult:
    return SendResult(
        outcome=outcome,
        http_status=http_status,
        response_text=response,
        retry_after=None,
        duration_ms=42,
        error=error,
        bytes_sent=100,
    )
