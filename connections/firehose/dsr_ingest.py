"""Applying a `dsr_processing_request`: an erasure through the one erasure service."""

from __future__ import annotations

import logging

from connections.firehose.dsr import DsrProcessingRequest
from connections.models import Connection, ErasureRecord
from connections.services.erasure import local as erasure

logger = logging.getLogger(__name__)


def apply_dsr(message: DsrProcessingRequest, connection: Connection | None) -> None:
    """Erase the person the request names, across every connection (the profile is shared by all).

    `connection` is the one the message's Connection Key named, if it carried an account: it was
    checked to exist; the erasure is not limited to it, since the person's data here is one profile.
    A request naming nobody we can match (only device ids, or a person never seen) changes nothing.
    Idempotent by `subject_request_id` (mParticle may send one request to several outputs).
    """
    if not message.customer_id and not message.email:
        logger.info("DSR %s names no customer ID or email: nothing to erase", message.subject_request_id)
        return
    result = erasure.erase(
        erasure.PersonQuery(customer_id=message.customer_id or "", email=message.email or ""),
        source=ErasureRecord.Source.MPARTICLE,
        request_id=message.subject_request_id,
        regulation=message.regulation or "",
    )
    logger.info(
        "DSR %s via connection %s: %s",
        message.subject_request_id,
        connection.pk if connection else "-",
        "already erased" if result.already_done else f"{len(result.plan.profile_ids)} profiles erased",
    )
