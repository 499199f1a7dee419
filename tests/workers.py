"""Real Celery worker processes for the tests whose point is the worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    user = s.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


# The deployed pool (the README runs `celery worker` with its default, prefork), where Celery enforces
# time limits; TEST_WORKER_POOL=threads for the old behaviour. Measured in tests/README.md.
DEFAULT_POOL = os.environ.get("TEST_WORKER_POOL", "prefork")
# TEST_WORKER_LOGLEVEL=DEBUG shows, among others, the time limits each task message carries.
LOGLEVEL = os.environ.get("TEST_WORKER_LOGLEVEL", "INFO")


def worker_env(standin_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=test_database_url(),
        CUSTOMERIO_US_URL=standin_url,
        CUSTOMERIO_EU_URL=standin_url,
        CUSTOMERIO_TIMEOUT="2",
        FORWARD_BACKOFF_BASE="0.2",
        FORWARD_BACKOFF_MAX="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def purge_broker() -> None:
    from cioaudience.celery import app

    app.control.purge()


@contextlib.contextmanager
def running_workers(
    standin_url: str,
    count: int = 1,
    concurrency: int = 2,
    log_dir: Path | None = None,
    pool: str = DEFAULT_POOL,
    beat: bool = False,
    **extra: str,
) -> Iterator[list[subprocess.Popen]]:
    """Start `count` worker processes (and, with `beat`, Celery beat, which runs the sweep as in
    production) and stop them (and their children) afterwards. The beat process is not in the list."""
    procs = []
    log_dir = log_dir or Path(settings.VAR_DIR) / "test-worker-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = worker_env(standin_url, **extra)
    scheduler = running_beat(standin_url, log_dir, **extra) if beat else contextlib.nullcontext()
    for n in range(count):
        log = open(log_dir / f"worker-{os.getpid()}-{n}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "cioaudience", "worker", "--pool", pool,
                 "--concurrency", str(concurrency), "--loglevel", LOGLEVEL, "-n", f"test{n}-{os.getpid()}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
    try:
        with scheduler:
            yield procs
    finally:
        for proc in procs:
            # The main process only: it stops its own pool. A SIGTERM to the whole group kills
            # prefork's children under it, and the main process then waits ~15 s before exiting.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def running_beat(standin_url: str, log_dir: Path | None = None, **extra: str) -> Iterator[subprocess.Popen]:
    """Celery beat with the product's schedule (the sweep every SWEEP_INTERVAL_SECONDS), as deployed.

    For tests where the sweep is part of what is shown: they must not call it themselves.
    """
    log_dir = log_dir or Path(settings.VAR_DIR) / "test-worker-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    schedule = log_dir / f"beat-schedule-{os.getpid()}"
    log = open(log_dir / f"beat-{os.getpid()}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "cioaudience", "beat", "--loglevel", "INFO",
         "--schedule", str(schedule)],
        cwd=ROOT, env=worker_env(standin_url, **extra), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for leftover in log_dir.glob(f"beat-schedule-{os.getpid()}*"):
            leftover.unlink()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
