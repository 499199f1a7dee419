"""HTTP plumbing of the stand-in: find the route (``routes.py``), authenticate, admit, answer.

Customer.io's behaviour reproduced here (reference/README.md, the OpenAPI document):
HTTP Basic (Site ID, API key) -> 401 ``{"meta": {"error": ...}}`` when wrong (App API: Bearer
with the App API key); a body that does not validate -> 400 ``{"meta": {"error": ...,
"errors": [...]}}``; a v2 batch of 500 KB or more -> 413; an invalid or oversized v2 action
(32 KB or more) -> 207 with ``{"errors": [{"batch_index", "reason", "field", "message"}]}``
while the other actions apply.
"""

from __future__ import annotations

import json
import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .control import handle_control
from .model import BodyError, ClientGone, RecordedRequest, Workspace
from .ports import ServerSide
from .routes import Call, Route, match
from .state import Admission
from .track import Outcome

logger = logging.getLogger("cio_standin")

# A stand-in has no reason to accept more than this; larger bodies are refused unread.
MAX_READ_BYTES = 16 * 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once per second rather than once per response."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse pooled connections
    # Headers and body go out in one write anyway (respond()), but a client's request can
    # still meet Nagle + delayed ACK on 100-continue or error paths: turn it off.
    disable_nagle_algorithm = True
    server_version = "cio-standin"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after two minutes
    server: ServerSide  # type: ignore[assignment]  # a StandinHTTPServer (server.py)

    # --- plumbing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler logs only the request line (never headers), and only for
        # malformed requests since respond() bypasses send_response().
        logger.warning("%s " + format, self.address_string(), *args)

    def respond(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Send a whole JSON response in a single write (see NOTES.md on Nagle's algorithm)."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"Date: {_http_date()}",
            "Server: cio-standin",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if headers:
            lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)
        except OSError:  # the client gave up (e.g. its timeout fired): nothing to answer
            self.close_connection = True

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            raise BodyError(400, f"invalid Content-Length {raw_length!r}") from None
        if length < 0:
            raise BodyError(400, "invalid Content-Length")
        if length > MAX_READ_BYTES:
            raise BodyError(413, f"request body of {length} bytes is too large")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise ClientGone
        return data

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ClientGone
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_READ_BYTES:
                raise BodyError(413, "request body is too large")
            chunks.append(self._read_exactly(size))
            self.rfile.readline(1024)

    def _dispatch(self) -> None:
        try:
            self._route()
        except ClientGone:  # wherever the body was being read: no answer, no record (see ClientGone)
            self.close_connection = True

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/_standin/") or path == "/_standin":
            handle_control(self, path, url.query)
            return
        if self._in_outage(path):
            return
        found = match(self.command, path)
        if found is None:
            self._not_found(path)
            return
        route, params = found
        self._answer(route, path, params, parse_qs(url.query))

    def _in_outage(self, path: str) -> bool:
        """During a simulated outage every Track request fails alike (see outage.py)."""
        outage = self.server.state.outage.current()
        if outage is None:
            return False
        try:
            self.read_body()
        except BodyError:
            self.close_connection = True
        self.server.state.outage.count_failed()
        record = self._new_record(path, self.server.state.authenticate(self.headers.get("Authorization")), None)
        record.fault = f"outage-{outage.mode}"
        if outage.mode == "hang":
            self.server.stopping.wait(outage.remaining)
            self._finish(record, None)
        else:
            self._finish(record, 503, {"meta": {"error": "stand-in outage: service unavailable"}})
        return True

    # --- answering a route ----------------------------------------------------------------

    def _new_record(
        self, path: str, workspace: Workspace | None, admission: Admission | None
    ) -> RecordedRequest:
        now = admission.now if admission else time.monotonic()
        wall = admission.wall_time if admission else time.time()
        site_id = workspace.site_id if workspace else None
        return RecordedRequest(-1, now, wall, self.command, path, site_id, [], None)

    def _finish(self, record: RecordedRequest, status: int | None, payload: Any = None,
                headers: dict[str, str] | None = None) -> None:
        record.status = status
        record.answered = time.monotonic()
        self.server.state.record(record)
        if status is None:
            self.close_connection = True  # the "drop" fault: no answer at all
        else:
            self.respond(status, payload, headers)
        if self.server.log_requests:
            logger.info("%s %s -> %s site=%s", record.method, record.path,
                        "dropped" if status is None else status, record.site_id)

    def _not_found(self, path: str) -> None:
        try:
            self.read_body()
        except BodyError:
            self.close_connection = True
        record = self._new_record(path, None, None)
        record.errors = [f"no such endpoint: {self.command} {path}"]
        self._finish(record, 404, {"meta": {"error": record.errors[0]}})

    def _admit(self, path: str, route: Route) -> tuple[Workspace, Admission] | None:
        """Check credentials and the rate limit; None when that already answered (401, 429)."""
        state = self.server.state
        authorization = self.headers.get("Authorization")
        authenticate = state.authenticate_app if route.auth == "app" else state.authenticate
        workspace = authenticate(authorization)
        if workspace is None:
            record = self._new_record(path, None, None)
            record.errors = ["Unauthorized request"]
            self._finish(record, 401, {"meta": {"error": "Unauthorized request"}})
            return None
        if route.auth == "app":
            # The App API has limits of its own (10 requests/s) that nothing here comes near.
            return workspace, Admission(time.monotonic(), time.time())
        admission = state.admit(workspace, is_write=self.command != "GET", path=path)
        if admission.retry_after is not None:
            record = self._new_record(path, workspace, admission)
            record.errors = ["rate limit exceeded"]
            self._finish(
                record, 429, {"meta": {"error": "Too many requests: rate limit exceeded"}},
                {"Retry-After": str(admission.retry_after)},
            )
            return None
        return workspace, admission

    def _answer(self, route: Route, path: str, params: dict[str, str], query: dict[str, list[str]]) -> None:
        try:
            raw = self.read_body()
        except BodyError as error:
            self.close_connection = True  # the unread body would desynchronise the stream
            record = self._new_record(path, None, None)
            record.errors = [str(error)]
            self._finish(record, error.status, {"meta": {"error": str(error)}})
            return
        admitted = self._admit(path, route)
        if admitted is None:
            return
        workspace, admission = admitted
        record = self._new_record(path, workspace, admission)
        outcome = route.endpoint(self.server.state, workspace, Call(params, query, raw, record))
        self._answer_write(record, admission, outcome)

    def _answer_write(
        self, record: RecordedRequest, admission: Admission, outcome: Outcome
    ) -> None:
        """Answer a checked write: apply it, unless a fault was drawn for it (or, for a delayed
        one, the stand-in was reset meanwhile: see State.apply_write)."""
        generation = self.server.state.generation
        if admission.fault == "drop":
            record.fault = "drop"
            self._finish(record, None)
            return
        if admission.fault == "timeout":
            record.fault = "timeout"
            # Wakes up early when the server stops, so stop() is never held up; a stopped
            # stand-in answers nothing.
            stopped = self.server.stopping.wait(self.server.state.faults.timeout_seconds)
            if stopped:
                self._finish(record, None)
            else:
                self._finish(record, 504, {"meta": {"error": "stand-in fault: gateway timeout"}})
            return
        if admission.fault == "status" and admission.fault_status is not None:
            record.fault = "status"
            status = admission.fault_status
            headers = None
            retry_after = self.server.state.faults.retry_after
            if status in (429, 503) and retry_after is not None:
                headers = {"Retry-After": str(retry_after)}
            message = f"stand-in fault: injected {status}"
            self._finish(record, status, {"meta": {"error": message}}, headers)
            return
        if admission.delay:
            record.fault = record.fault or "delay"
            self.server.stopping.wait(admission.delay)
        self.server.state.apply_write(generation, outcome.apply)
        self._finish(record, outcome.status, outcome.payload)
