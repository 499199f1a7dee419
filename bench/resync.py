"""Benchmark `manage.py resync`: N profiles in 3 audiences, resynced to the local stand-in.

    createdb -h 127.0.0.1 -U postgres cioaudience_bench_resync
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/cioaudience_bench_resync
    .venv/bin/python bench/resync.py 100000
    ... bench/resync.py 1000000 --workers 2      # workers send instead of the command

It wipes the product's tables of the bench database (it refuses a database whose name does
not contain "bench"; give it a database of its own, not one another benchmark uses),
creates the profiles and memberships with set-based SQL, starts the stand-in
(`manage.py cio_standin`, no rate limit, 1% of bodies validated, counters only) in a
subprocess, runs `manage.py resync --send-here` (or with `--workers K` Celery workers) as a
child process and prints its duration, the requests Customer.io would have received, and the
peak resident memory of the resync process (os.wait4's rusage of that very child).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SITE_ID = "bench-site"
CONNECTION_NAME = "Bench workspace"
AUDIENCES = [(1001, "Everyone"), (1002, "Half, with ex-members"), (1003, "A third")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", type=int, nargs="?", default=100_000, help="How many profiles (default 100000).")
    parser.add_argument("--workers", type=int, default=0, help="Send with K Celery workers instead of --send-here.")
    parser.add_argument(
        "--toggle", action="store_true", help="One attribute per audience (default: SegmentMembership)."
    )
    parser.add_argument("--transport", choices=["v2_batch", "v1"], default="v2_batch")
    parser.add_argument("--chunk-size", type=int, default=5000, help="resync --chunk-size (default 5000).")
    return parser.parse_args()


def environment(standin_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    env = dict(os.environ)
    bench_dir = ROOT / "var" / "bench"
    # Production settings: with DEBUG on, Django keeps the last 9,000 queries' SQL in memory,
    # which would be measured as the command's memory.
    env.setdefault("DEBUG", "0")
    env.setdefault("SECRET_KEY", "bench-only-" + secrets.token_urlsafe(48))
    env.setdefault("BROKER_DIR", str(bench_dir / "broker"))
    env.setdefault("LOG_LEVEL", "WARNING")
    env["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
    env["CUSTOMERIO_US_URL"] = env["CUSTOMERIO_EU_URL"] = standin_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_data(profiles: int, api_key: str, toggle: bool, transport: str) -> int:
    """Empty the product's tables and fill them with set-based SQL. Returns the connection's id."""
    from django.core.management import call_command
    from django.db import connection as db

    from connections.models import Audience, Connection, Membership, Profile, Subscription

    name = db.settings_dict["NAME"]
    if "bench" not in str(name):
        sys.exit(f"refusing to wipe database {name!r}: its name must contain 'bench'")
    call_command("migrate", verbosity=0)
    tables = [
        "connections_delivery", "connections_forward", "connections_resyncrun", "connections_membership",
        "connections_subscription", "connections_profile", "connections_audience", "connections_connection",
    ]
    postgres = db.vendor == "postgresql"
    with db.cursor() as cursor:
        if postgres:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608
    connection = Connection.objects.create(
        name=CONNECTION_NAME, site_id=SITE_ID, api_key=api_key, rate_limit=100_000,
        one_attribute_per_audience=toggle, transport=transport,
    )
    audiences = [Audience.objects.create(audience_id=a, name=n) for a, n in AUDIENCES]
    for audience in audiences:
        Subscription.objects.create(connection=connection, audience=audience)

    profile, membership = Profile._meta.db_table, Membership._meta.db_table
    series = (
        "generate_series(1, %s) AS g(n)" if postgres
        else "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) SELECT n FROM s) AS g"
    )
    started = time.monotonic()
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {profile} (customer_id, email, first_name, last_name, mpid, created_at, updated_at)"  # noqa: S608
            f" SELECT 'bench-' || g.n, 'person' || g.n || '@example.com', 'Ada', 'Lovelace', NULL,"
            f" CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM {series}",
            [profiles],
        )
        everyone, half, third = (a.pk for a in audiences)
        # Everyone is in the first audience; every 2nd profile has a record in the second (every
        # 4th a member, the others recorded ex-members); every 3rd is in the third.
        for audience_pk, where, member in (
            (everyone, "1 = 1", "1 = 1"),
            (half, "p.id %% 2 = 0", "p.id %% 4 = 0"),
            (third, "p.id %% 3 = 0", "1 = 1"),
        ):
            cursor.execute(
                f"INSERT INTO {membership} (profile_id, audience_id, is_member, changed_at)"  # noqa: S608
                f" SELECT p.id, %s, {member}, CURRENT_TIMESTAMP FROM {profile} p WHERE {where}",
                [audience_pk],
            )
        if postgres:
            cursor.execute(f"ANALYZE {profile}")
            cursor.execute(f"ANALYZE {membership}")
    memberships = Membership.objects.count()
    print(f"created {profiles:,} profiles and {memberships:,} memberships in {time.monotonic() - started:.1f}s")
    db.close()
    return connection.pk


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), read before it is stopped."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def start_standin(env: dict[str, str], workspaces_file: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "cio_standin", "--port", "0", "--workspaces-file", workspaces_file,
         "--validate-share", "0.01", "--no-record"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        sys.exit(f"the stand-in did not start: {line!r}")
    return proc, match.group(1)


def standin_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_standin/stats", timeout=10) as response:
        return json.load(response)


def start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            # Celery's default prefork pool, as the README deploys it: 2 child processes per worker.
            [PYTHON, "-m", "celery", "-A", "cioaudience", "worker", "--pool", "prefork", "--concurrency", "2",
             "--loglevel", "WARNING", "-n", f"bench{n}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=open(log_dir / f"worker{n}.log", "w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        for n in range(count)
    ]


def main() -> None:
    args = parse_args()
    api_key = "bench-" + secrets.token_urlsafe(16)
    with tempfile.NamedTemporaryFile("w", suffix=".workspaces", delete=False) as f:
        f.write(f"{SITE_ID}:{api_key}:us\n")
        workspaces_file = f.name
    os.chmod(workspaces_file, 0o600)
    base_env = environment()
    if not base_env.get("ENCRYPTION_KEYS"):
        from cryptography.fernet import Fernet

        base_env["ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    Path(base_env["BROKER_DIR"]).mkdir(parents=True, exist_ok=True)

    standin, url = start_standin(base_env, workspaces_file)
    env = environment(url) | {"ENCRYPTION_KEYS": base_env["ENCRYPTION_KEYS"]}
    workers: list[subprocess.Popen] = []
    try:
        setup_django(env)
        connection_id = create_data(args.profiles, api_key, args.toggle, args.transport)
        if args.workers:
            from cioaudience.celery import app

            app.control.purge()
            workers = start_workers(env, args.workers)
        command = [PYTHON, "manage.py", "resync", "--connection", str(connection_id),
                   "--chunk-size", str(args.chunk_size)]
        command += ["--stall-timeout", "600"] if args.workers else ["--send-here"]
        print("$", " ".join(command[1:]))
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        duration = time.monotonic() - started
        stats = standin_stats(url)
        worker_peaks = [peak_rss_mb(worker.pid) for worker in workers]
    finally:
        for worker in workers:
            worker.terminate()
        standin.terminate()
        standin.wait(timeout=10)
        for worker in workers:
            worker.wait(timeout=30)
        os.unlink(workspaces_file)

    print(output.rstrip())
    site = stats["workspaces"].get(SITE_ID, {})
    print(
        json.dumps(
            {
                "profiles": args.profiles,
                "sender": f"{args.workers} workers" if args.workers else "--send-here",
                "exit_code": proc.returncode,
                "duration_s": round(duration, 1),
                "profiles_per_s": round(args.profiles / duration),
                "requests": stats["requests"],
                "people_in_standin": site.get("people"),
                "invalid_bodies": stats["invalid_bodies"],
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
                "worker_peak_rss_mb": worker_peaks,
            },
            indent=2,
        )
    )
    if proc.returncode != 0:
        sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
