"""What an unauthenticated Firehose request costs the web process (issue 16 item 1).

Sends a body of FIREHOSE_MAX_BODY_BYTES (5 MB by default) made of small nested arrays, with
no token, through the real view (Django's WSGI handler, in this process), and prints the
answer, the bytes the view read, the CPU time and the peak memory Python allocated for it.
Median of N runs. No database is touched by the request itself.

    .venv/bin/python bench/unauthenticated.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")
os.environ.setdefault("DEBUG", "1")


class CountingInput(io.BytesIO):
    """wsgi.input that remembers how many bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.consumed += len(line)
        return line


def nested_body(size: int) -> bytes:
    """A JSON object whose value is many small nested arrays, `size` bytes long at most."""
    unit = b"[[[[[[[[[[1]]]]]]]]]],"
    head, tail = b'{"type":"audience_membership_change_request","x":[', b"0]}"
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def one_request(application, body: bytes, trace: bool) -> tuple[str, int, float, int]:
    stream = CountingInput(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/mparticle/firehose",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": stream,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status_seen: list[str] = []
    # Memory is traced in a separate run: tracing slows allocation, which would inflate the CPU time.
    if trace:
        tracemalloc.start()
    started = time.process_time()
    b"".join(application(environ, lambda status, headers, *a: status_seen.append(status)))
    cpu = time.process_time() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    return status_seen[0], stream.consumed, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    body = nested_body(settings.FIREHOSE_MAX_BODY_BYTES)
    logging.getLogger("django.request").setLevel(logging.ERROR)  # one 401 warning per run is noise here
    results = [one_request(application, body, trace=False) for _ in range(args.runs)]
    peaks = [one_request(application, body, trace=True)[3] for _ in range(args.runs)]
    statuses = sorted({r[0] for r in results})
    print(f"body {len(body):,} bytes of nested arrays, no token, {args.runs} runs")
    print(f"answer: {', '.join(statuses)}")
    print(f"bytes read by the view (median): {statistics.median(r[1] for r in results):,.0f}")
    print(f"CPU time (median): {statistics.median(r[2] for r in results) * 1000:.1f} ms")
    print(f"peak Python allocations (median): {statistics.median(peaks) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
