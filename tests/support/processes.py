"""Processes the tests and the benchmarks start (no Django here): Celery's command lines, a stop, a wait."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def celery_worker(
    python: str, name: str, *, pool: str, concurrency: int, loglevel: str, heartbeat: bool = True
) -> list[str]:
    """The command line of a Celery worker of the product, as the README deploys it (`pool` prefork there)."""
    command = [python, "-m", "celery", "-A", "cioaudience", "worker", "--pool", pool, "--concurrency", str(concurrency)]
    command += ["--loglevel", loglevel, "-n", name, "--without-gossip", "--without-mingle"]
    return command if heartbeat else [*command, "--without-heartbeat"]


def celery_beat(python: str, schedule: Path) -> list[str]:
    """Celery beat with the product's schedule (the sweep every SWEEP_INTERVAL_SECONDS)."""
    return [python, "-m", "celery", "-A", "cioaudience", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the process's group (started with start_new_session), SIGKILL if it outlives `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "condition"
) -> Any:
    """The predicate's first true value, asked every `interval` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
