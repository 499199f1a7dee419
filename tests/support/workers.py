"""Real Celery worker processes for the tests whose point is the worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.support.processes import ROOT, celery_beat, celery_worker, stop_group, wait_until

__all__ = ["purge_broker", "running_beat", "running_workers", "test_database_url", "wait_until", "worker_env"]


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
                celery_worker(
                    sys.executable,
                    f"test{n}-{os.getpid()}@%h",
                    pool=pool,
                    concurrency=concurrency,
                    loglevel=LOGLEVEL,
                    heartbeat=False,
                ),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
        celery_beat(sys.executable, schedule),
        cwd=ROOT,
        env=worker_env(standin_url, **extra),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_group(proc, timeout=15)
        for leftover in log_dir.glob(f"beat-schedule-{os.getpid()}*"):
            leftover.unlink()
