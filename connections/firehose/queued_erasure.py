"""An erasure from the admin or `erase_person` that waits in the Firehose queue for its turn.

With FIREHOSE_APPLY=worker, an erasure must cover every message accepted before it, so those
are applied first. A request cannot wait for a long backlog (after a worker outage, say): past
`ERASURE_WAIT_SECONDS` the erasure is stored in the same queue, behind them, and the applier
(`inbox`) carries it out in its turn, as it does an mParticle DSR. Its body holds the person's
identifiers only until then: it is cleared once applied, like every stored message's.
"""

from __future__ import annotations

import json
import uuid

from connections.models import FirehoseMessage
from connections.services.erasure import local as erasure

MESSAGE_TYPE = FirehoseMessage.QUEUED_ERASURE  # never a Firehose type: mParticle's end in `_request`
ID_PREFIX = "erasure:"


def queue(query: erasure.PersonQuery, *, source: str, requested_by: str = "") -> str:
    """Store the erasure behind every message waiting now; returns the request id its record will have."""
    request_id = str(uuid.uuid4())
    body = {
        "customer_id": query.customer_id,
        "email": query.email,
        "profile_ids": list(query.profile_ids),
        "source": source,
        "requested_by": requested_by,
        "request_id": request_id,
    }
    FirehoseMessage.objects.create(
        message_id=f"{ID_PREFIX}{request_id}",
        message_type=MESSAGE_TYPE,
        response={"request_id": request_id},
        pending=True,
        body=json.dumps(body),
    )
    return request_id


def apply(body: str) -> erasure.ErasureResult:
    """Carry out a stored erasure (inside the applier's transaction); idempotent by its request id."""
    stored = json.loads(body)
    query = erasure.PersonQuery(
        customer_id=stored["customer_id"], email=stored["email"], profile_ids=tuple(stored["profile_ids"])
    )
    return erasure.erase(
        query, source=stored["source"], request_id=stored["request_id"], requested_by=stored["requested_by"]
    )
