"""What the request handler and the control API need of each other, as protocols (no import of either)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .state import State


class ServerSide(Protocol):
    """The HTTP server as its handlers see it: the shared state, and how to stop or refuse."""

    state: State
    stopping: threading.Event
    log_requests: bool

    def refuse_for(self, seconds: float) -> None: ...


class Exchange(Protocol):
    """One request being answered, as the control API sees it."""

    command: str
    close_connection: bool
    server: ServerSide

    def read_body(self) -> bytes: ...

    def respond(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None: ...
