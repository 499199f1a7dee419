"""The history of each connection's state, for /metrics (state changes) and the admin.

The circuit breaker calls `record_state_change` on every transition it makes; the same
transaction as the state update is best (a rolled-back transition then leaves no trace).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from connections.logfmt import logfmt
from connections.models import Connection, ConnectionStateChange

log = logging.getLogger("cioaudience.breaker")

STATES = frozenset(Connection.State.values)
REASON_MAX_CHARS = ConnectionStateChange._meta.get_field("reason").max_length or 500


class UnknownState(ValueError):
    """A state that is not one of Connection.State's."""


def record_state_change(
    connection_id: int, from_state: str, to_state: str, reason: str = "", at: datetime | None = None
) -> ConnectionStateChange | None:
    """Note that a connection went from one state to another; None (nothing written) if they are the same."""
    for state in (from_state, to_state):
        if state not in STATES:
            raise UnknownState(f"{state!r} is not a connection state ({', '.join(sorted(STATES))})")
    if from_state == to_state:
        return None
    return ConnectionStateChange.objects.create(
        connection_id=connection_id,
        from_state=from_state,
        to_state=to_state,
        reason=reason[:REASON_MAX_CHARS],
        at=at or timezone.now(),
    )


def note_transition(connection_id: int, from_state: str | None, to_state: str, reason: str) -> None:
    """A transition that happened (its conditional UPDATE matched): one log line and one history row."""
    log.warning(logfmt("connection_state", connection=connection_id, old=from_state, new=to_state, reason=reason))
    if from_state is not None:
        record_state_change(connection_id, from_state, to_state, reason)
