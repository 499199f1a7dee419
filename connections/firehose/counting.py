"""Counting Firehose requests by message type and outcome for /metrics: a decorator on the view.

The view notes the message's `type` on the request (`request.firehose_type`) once it has
decoded the body; requests refused before that count as type "unknown".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from connections.firehose.messages import REQUEST_TYPES
from connections.services.visibility import firehose_counts

log = logging.getLogger("cioaudience.firehose")

KNOWN_TYPES = frozenset(REQUEST_TYPES)


def counted(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    @functools.wraps(view)  # keeps the view's attributes, csrf_exempt included
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            response = view(request)
        except Exception:
            _count(request, "error")
            raise
        _count(request, firehose_counts.outcome_of(response.status_code))
        return response

    return wrapper


def _count(request: HttpRequest, outcome: str) -> None:
    message_type = getattr(request, "firehose_type", None)
    try:
        firehose_counts.count_request(message_type if isinstance(message_type, str) else None, outcome, KNOWN_TYPES)
    except DatabaseError as error:
        # The message is applied (or refused) already: a lost count must not turn its answer into a 500.
        log.warning("could not count a Firehose request outcome=%s error=%s", outcome, error)
