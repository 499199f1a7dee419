"""A local stand-in for Customer.io's Track API (SPEC §10), over real HTTP on 127.0.0.1.

It answers ``PUT /api/v1/customers/{identifier}``, ``POST /api/v2/batch``,
``GET /api/v1/accounts/region``, the manual segment endpoints and the App API's segment creation
(every route is in ``routes.py``) as Customer.io documents them: HTTP Basic against the
workspaces it was given, every body (or a sampled share, ``validate_share``) validated against
Customer.io's OpenAPI document (``contract.py``), people's attributes merged and kept per
workspace, an optional per-workspace rate limit (429 + Retry-After above it in any sliding
1-second window), injectable faults (``Faults``), and a record of every request. Tests and
tools read and steer it in process (this class) or over HTTP (``control.py``, under
``/_standin/``).

In a test::

    with StandinServer([Workspace("site1", "key1")]) as cio:
        requests.put(f"{cio.url}/api/v1/customers/42", json={"plan": "pro"},
                     auth=("site1", "key1"))
        assert cio.people("site1") == {"42": {"plan": "pro"}}
        cio.set_faults(Faults(share=1.0, statuses=(503,)))

Pure standard library plus jsonschema, so it starts in milliseconds and needs no Django.
API keys are never logged, recorded or shown (``Workspace`` hides it from its repr).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from . import contract
from .handler import StandinHandler
from .model import Faults, RecordedRequest, Workspace
from .outage import Outage
from .state import State

logger = logging.getLogger("cio_standin")


class StandinHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer (one thread per connection) that can close its open connections."""

    daemon_threads = True  # keep-alive connections must not keep the process alive
    request_queue_size = 1024  # benchmarks open many connections at once
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: State, log_requests: bool) -> None:
        self.state = state
        self.log_requests = log_requests
        self.stopping = threading.Event()  # wakes sleeping fault handlers on stop()
        self.refuse_seconds = 0.0  # set by refuse_for(): the serving loop stops listening that long
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, StandinHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a DNS look-up that can take
        # seconds on a machine without a resolver; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def refuse_for(self, seconds: float) -> None:
        """Stop listening for `seconds` (the "refuse" outage); StandinServer listens again after.

        Called from a handler thread: serve_forever() is stopped from yet another thread, since
        shutdown() waits for the serving loop, which must first finish this handler's answer.
        """
        self.refuse_seconds = seconds
        threading.Thread(target=self.shutdown, name="cio-standin-refuse", daemon=True).start()

    def close_connections(self) -> None:
        """Close every open keep-alive connection, so that a client's pooled connection
        cannot reach a stopped stand-in."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class StandinServer:
    """The stand-in, run in a background thread (``start()``) or in the foreground
    (``serve_forever()``).

    ``validate_share`` is the share of bodies validated against the OpenAPI document (1.0:
    every one; less keeps benchmarks cheap). ``seed`` seeds the random generator behind the
    faults. ``record_requests=False`` keeps only counters (and invalid requests);
    ``record_bodies=False`` keeps records without their bodies. Both keep memory flat in
    long benchmarks.
    """

    def __init__(
        self,
        workspaces: Iterable[Workspace] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        validate_share: float = 1.0,
        seed: int | None = 0,
        faults: Faults | None = None,
        record_requests: bool = True,
        record_bodies: bool = True,
        log_requests: bool = False,
    ) -> None:
        self.state = State(
            workspaces,
            validate_share=validate_share,
            seed=seed,
            faults=faults,
            record_requests=record_requests,
            record_bodies=record_bodies,
        )
        contract.warm_up()  # build the validators now, not during the first request
        self._log_requests = log_requests
        self._httpd = StandinHTTPServer((host, port), self.state, log_requests)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._swap = threading.Lock()  # stop() and the "refuse" loop agree on which server runs

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``: the Track host to point a client at."""
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_standin/"

    def start(self) -> StandinServer:
        """Serve in a daemon thread; returns self. The socket listens already, so requests
        made right after start() are answered."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve,
                args=(0.05,),  # stop() returns within 50 ms
                name=f"cio-standin-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until stop() is called from another one (or Ctrl-C)."""
        try:
            self._serve(0.2)
        finally:
            self._close()

    def _serve(self, poll_interval: float) -> None:
        """Serve; after a "refuse" outage stopped the loop, listen again on the same port."""
        while True:
            self._httpd.serve_forever(poll_interval=poll_interval)
            seconds = self._httpd.refuse_seconds
            if not seconds or self._stopped.is_set():
                return
            address = self._httpd.server_address[:2]
            self._httpd.server_close()
            self._httpd.close_connections()
            if self._stopped.wait(seconds):
                return
            with self._swap:
                if self._stopped.is_set():
                    return
                self._httpd = StandinHTTPServer(address, self.state, self._log_requests)

    def stop(self) -> None:
        self._stopped.set()
        self._httpd.stopping.set()
        if self._thread is not None:
            with self._swap:
                self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        self._httpd.stopping.set()
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what it received -----------------------------------------------------------------

    def people(self, site_id: str) -> dict[str, dict[str, Any]]:
        """``{identifier: attributes}`` for one workspace (a copy)."""
        return self.state.people(site_id)

    def requests(self, site_id: str | None = None) -> list[RecordedRequest]:
        """Recorded Track API requests, oldest first (all workspaces when site_id is None;
        requests with wrong credentials have site_id None)."""
        return self.state.requests(site_id)

    def segments(self, site_id: str) -> list[dict[str, Any]]:
        """A workspace's manual segments, each with its ``members`` (ids, or emails for people without one)."""
        return self.state.directory.segments(site_id, with_members=True)

    def segment_members(self, site_id: str, segment_id: int) -> set[str]:
        return self.state.directory.segment_members(site_id, segment_id)

    def create_segment(self, site_id: str, name: str, description: str = "") -> int:
        """Create a manual segment as if through the App API; returns its id."""
        return self.state.directory.create_segment(site_id, name, description).id

    def invalid_requests(self) -> list[RecordedRequest]:
        """Requests whose body did not validate (kept even with record_requests=False)."""
        return self.state.invalid_requests()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    # --- steering -------------------------------------------------------------------------

    def start_outage(self, mode: str, seconds: float) -> None:
        """Every Track request fails for `seconds`: "503", "hang" or "refuse" (see outage.py)."""
        outage = Outage.start(mode, seconds)
        if mode == "refuse":
            self._httpd.refuse_for(outage.remaining)
        else:
            self.state.outage.set(outage)

    def end_outage(self) -> None:
        self.state.outage.set(None)

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    def clear_faults(self) -> None:
        self.state.set_faults(Faults())

    def add_workspace(self, workspace: Workspace) -> None:
        """Add a workspace, or replace the one with the same site ID."""
        self.state.add_workspace(workspace)

    def workspaces(self) -> list[Workspace]:
        return self.state.workspaces()

    def reset(self) -> None:
        """Forget people, requests, counters and faults (workspaces stay)."""
        self.state.reset()
