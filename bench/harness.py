"""Shared plumbing for the benchmarks: a fresh database, the stand-in, workers, a clock.

Every benchmark runs against the product as deployed: PostgreSQL and Redis (this machine's,
or DATABASE_URL / CELERY_BROKER_URL), real processes, HTTP on 127.0.0.1 only. Each process
it starts is stopped when the benchmark ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.support
from tests.support.processes import ROOT, celery_worker, stop_group, wait_until

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
LOGS = ROOT / "var" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def bench_env(db_name: str, standin_port: int, **extra: str) -> dict[str, str]:
    """The environment of every process of a benchmark run."""
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DEBUG="1",
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{db_name}"),
        CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9"),
        ENCRYPTION_KEYS=os.environ.get("ENCRYPTION_KEYS") or Fernet.generate_key().decode(),
        CUSTOMERIO_US_URL=f"http://127.0.0.1:{standin_port}",
        CUSTOMERIO_EU_URL=f"http://127.0.0.1:{standin_port}",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def deployed_env(db_name: str, standin_port: int, allowed_hosts: str, **extra: str) -> dict[str, str]:
    """`bench_env` as deployed: DEBUG off (no query log, so no development aid slows the product),
    a throwaway secret key, plain HTTP on loopback."""
    import secrets

    return bench_env(
        db_name,
        standin_port,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS=allowed_hosts,
        SECURE_SSL_REDIRECT="0",
        **extra,
    )


def recreate_database(env: dict[str, str]) -> None:
    """Drop and create the benchmark's PostgreSQL database, migrate it, empty the broker."""
    url = env["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    broker = env["CELERY_BROKER_URL"]
    if broker.startswith("redis://"):
        import redis

        redis.Redis.from_url(broker).flushdb()


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def insert_people(count: int) -> None:
    """`count` new people, customer ids p00000001..., with one INSERT ... SELECT (after setup_django)."""
    from django.db import connection

    from connections.models import Profile

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Profile._meta.db_table} (customer_id, email, first_name, last_name, mpid, created_at,"  # noqa: S608
            " updated_at) SELECT 'p' || lpad(n::text, 8, '0'), 'p' || n || '@example.com', '', '', NULL, now(), now()"
            " FROM generate_series(1, %s) n",
            [count],
        )


class Processes:
    """Child processes (each in its own process group) stopped together at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}  # session id (the started process's pid) -> name
        LOGS.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(LOGS / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each started process with its children, by name,
        and by every PostgreSQL process of the machine ("postgres") and this one ("benchmark")."""
        used: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                text = stat.read_text()
                command, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
                pid, session = int(stat.parent.name), int(fields[3])
                name = (
                    self.names.get(session)
                    or ("postgres" if command.startswith("postgres") else None)
                    or ("benchmark" if pid == os.getpid() else None)
                )
                if name:
                    used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return used

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # all at once, then each waited for
        for proc in self.procs:
            stop_group(proc, timeout=20)


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    group = Processes()
    try:
        yield group
    finally:
        group.stop()


def start_standin(
    group: Processes,
    env: dict[str, str],
    port: int,
    workspaces: list[str],
    validate_share: float = 1.0,
    record_bodies: bool = False,
) -> None:
    spec = ",".join(workspaces)
    group.start(
        "standin",
        [
            PYTHON,
            "manage.py",
            "cio_standin",
            "--port",
            str(port),
            "--validate-share",
            str(validate_share),
            *([] if record_bodies else ["--no-record-bodies"]),
        ],
        {**env, "CIO_STANDIN_WORKSPACES": spec},
    )
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{port}/_standin/health"), 30, "the stand-in to listen")


def start_workers(
    group: Processes, env: dict[str, str], count: int, concurrency: int = 2, pool: str = "prefork"
) -> None:
    """`count` Celery workers of `concurrency` each, on the pool the README deploys (prefork) by default."""
    for n in range(count):
        group.start(
            f"worker{n}",
            celery_worker(PYTHON, f"bench{n}@%h", pool=pool, concurrency=concurrency, loglevel="WARNING"),
            env,
        )


def standin(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_standin/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """The predicate's first true value; a benchmark that waits in vain stops with the reason."""
    try:
        return wait_until(predicate, timeout, interval, what)
    except AssertionError as timed_out:
        raise SystemExit(str(timed_out)) from None


def start_web(group: Processes, env: dict[str, str], port: int, workers: int = 2) -> None:
    """The product's web app under gunicorn, as in production."""
    group.start(
        "gunicorn",
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "cioaudience.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        env,
    )
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{port}/healthz"), 60, "gunicorn to answer /healthz")
