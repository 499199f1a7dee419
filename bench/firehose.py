"""Benchmark `POST /api/mparticle/firehose` under gunicorn: latency and profiles per second.

    createdb -h 127.0.0.1 -U postgres cioaudience_bench     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cioaudience_bench .venv/bin/python bench/firehose.py
    .venv/bin/python bench/firehose.py --seconds 20 --rate 20            # SQLite file, 20 messages/s
    .venv/bin/python bench/firehose.py --concurrency 4                   # closed loop: 4 clients back to back

It starts from a fresh database (PostgreSQL when DATABASE_URL is set, and only one whose name
contains "bench"; otherwise a new SQLite file), migrates it, creates a connection with active
subscriptions to a few audiences and an inbound token, starts `gunicorn cioaudience.wsgi -w N`
on 127.0.0.1, and drives the endpoint from a second process: audience_membership_change_requests
of --profiles profiles each (a mix of add and delete over the audiences, some carrying
$FirstName/$LastName, customer ids drawn from a pool so both new and known profiles occur).

Open loop by default: requests start on a fixed schedule (--rate per second) whatever the
answers, and latency is measured from the scheduled start, so a slow server is not hidden by
a client that waits (coordinated omission). With --concurrency C, C clients send back to back.
Everything is bounded: --seconds of load, at most --max-requests, then every process stops.
Nothing talks to Customer.io: no worker runs, forwards stay queued.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
GUNICORN = str(Path(PYTHON).parent / "gunicorn")
PATH = "/api/mparticle/firehose"
AUDIENCES = [(9001, "Bench A"), (9002, "Bench B"), (9003, "Bench C"), (9004, "Bench D"), (9005, "Bench E")]

# Every membership message names its connection by this key (SPEC section 5).
BENCH_CONNECTION_KEY = "bench-connection-key"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="Duration of the load (default 20, at most 600).")
    parser.add_argument("--rate", type=float, default=20.0, help="Messages per second, open loop (default 20).")
    parser.add_argument("--concurrency", type=int, default=0, help="Closed loop with C clients instead of --rate.")
    parser.add_argument("--profiles", type=int, default=100, help="Profiles per message (default 100).")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2).")
    parser.add_argument("--pool", type=int, default=50_000, help="Distinct customer ids drawn from (default 50000).")
    parser.add_argument("--max-requests", type=int, default=20_000, help="Stop after this many (default 20000).")
    return parser.parse_args()


# --- the benchmark's own processes ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(workdir: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DEBUG="0",  # as deployed: no query log, no debug pages
        SECRET_KEY=secrets.token_urlsafe(48),
        SECURE_SSL_REDIRECT="0",  # plain HTTP on loopback
        ALLOWED_HOSTS="127.0.0.1",
        ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BROKER_DIR=str(workdir / "broker"),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    return env


def fresh_database(env: dict[str, str]) -> str:
    url = env["DATABASE_URL"]
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parsed = urlparse(url)
        name = parsed.path.lstrip("/")
        if "bench" not in name:
            raise SystemExit(f"refusing to recreate database {name!r}: its name must contain 'bench'")
        with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        described = f"PostgreSQL ({name})"
    else:
        described = f"SQLite ({url.removeprefix('sqlite:///')})"
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    return described


def create_fixtures(env: dict[str, str]) -> str:
    """A connection with active subscriptions and an inbound token (created in a child process); returns the token."""
    out = subprocess.run(
        [PYTHON, __file__, "_setup"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True
    )
    return str(json.loads(out.stdout.strip().splitlines()[-1])["token"])


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
    import django

    django.setup()
    from connections.models import Audience, Connection
    from connections.services.ingest import subscriptions, tokens

    connection = Connection.objects.create(
        name="Bench workspace", site_id="bench-site", api_key="bench-key-0000", connection_key=BENCH_CONNECTION_KEY
    )
    for audience_id, name in AUDIENCES:
        subscriptions.subscribe(Audience.objects.create(audience_id=audience_id, name=name), connection)
    _, token = tokens.create_token("bench")
    print(json.dumps({"token": token}))


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, workers: int, log: Path, app: str = "cioaudience.wsgi"):  # type: ignore[no-untyped-def]
    """gunicorn serving `app` (the product's unless a benchmark says otherwise; bench/ is on its path)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    bench = str(ROOT / "bench")
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [GUNICORN, app, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "30", "--pythonpath", bench],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not _registration_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"gunicorn did not start; see {log}")
                time.sleep(0.2)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _registration_answers(port: int) -> bool:
    body = json.dumps(
        {"type": "module_registration_request", "id": str(uuid.uuid4()), "timestamp_ms": 0, "firehose_version": "3.2.0"}
    )
    try:
        status, _ = post(port, body, headers={})
    except OSError:
        return False
    return status == 200


# --- the load ---------------------------------------------------------------------------


def post(port: int, body: str, headers: dict[str, str], conn: http.client.HTTPConnection | None = None):  # type: ignore[no-untyped-def]
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", PATH, body=body.encode(), headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    if response.getheader("Connection", "").lower() == "close":
        conn.close()
    return response.status, data


def message(rng: random.Random, profiles: int, pool: int) -> str:
    user_profiles = []
    for n in rng.sample(range(pool), profiles):
        audiences = []
        for audience_id, name in rng.sample(AUDIENCES, rng.randint(1, 3)):
            audiences.append(
                {"audience_id": audience_id, "audience_name": name, "action": rng.choice(("add", "add", "delete"))}
            )
        if rng.random() < 0.2:
            audiences[0]["user_attributes"] = [
                {"key": "$FirstName", "value": f"First{n}", "action": "upsert"},
                {"key": "$LastName", "value": f"Last{rng.randint(0, 9)}", "action": "upsert"},
            ]
        user_profiles.append(
            {
                "user_identities": [
                    {"type": "customer", "encoding": "raw", "value": f"cust-{n}"},
                    {"type": "email", "encoding": "raw", "value": f"person{n}@example.com"},
                    {"type": "email", "encoding": "sha256", "value": secrets.token_hex(32)},
                ],
                "mpid": str(10_000_000 + n),
                "audiences": audiences,
            }
        )
    return json.dumps(
        {
            "type": "audience_membership_change_request",
            "id": str(uuid.uuid4()),
            "timestamp_ms": int(time.time() * 1000),
            "firehose_version": "3.2.0",
            "account": {"account_id": 1, "account_settings": {"connectionKey": BENCH_CONNECTION_KEY}},
            "user_profiles": user_profiles,
        }
    )


def _drive(config: dict) -> None:  # type: ignore[type-arg]
    """The client process: sends the load, prints its measurements as JSON."""
    closed_loop = bool(config["concurrency"])
    total = (
        config["max_requests"] if closed_loop else min(config["max_requests"], int(config["rate"] * config["seconds"]))
    )
    # Open loop: every body made before the clock starts. Closed loop: each client makes its next
    # body before it takes the time, so making bodies is never measured; with "prebuilt", all are
    # made before the clock, so the client's CPU does not count against a server measured by its rate.
    rng = random.Random(7)
    prebuilt = not closed_loop or config.get("prebuilt", False)
    bodies = [message(rng, config["profiles"], config["pool"]) for _ in range(total)] if prebuilt else []
    headers = {"Authorization": f"Token {config['token']}"}
    port = config["port"]
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    next_index = iter(range(total))
    start = time.monotonic()
    stop_at = start + config["seconds"]

    def client(seed: int) -> None:
        own_rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            if closed_loop:
                body = bodies[i] if prebuilt else message(own_rng, config["profiles"], config["pool"])
                scheduled = time.monotonic()
            else:
                body = bodies[i]
                scheduled = start + i / config["rate"]
            if scheduled >= stop_at:
                return
            if (delay := scheduled - time.monotonic()) > 0:
                time.sleep(delay)
            try:
                status, _ = post(port, body, headers, conn)
            except OSError:
                status = 0
                conn.close()
            with lock:
                results.append((time.monotonic() - scheduled, status))

    clients = config["concurrency"] or min(64, max(4, int(config["rate"])))
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=config["seconds"] + 30)
    elapsed = time.monotonic() - start
    print(json.dumps({"results": results, "elapsed": elapsed, "clients": clients}))


def count_rows(env: dict[str, str]) -> dict[str, int]:
    code = (
        "import django,json;django.setup();"
        "from connections.models import FirehoseMessage,Profile,Membership,Forward;"
        "print(json.dumps({m.__name__: m.objects.count() for m in (FirehoseMessage,Profile,Membership,Forward)}))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "cioaudience.settings"},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    args = parse_args()
    args.seconds = min(args.seconds, 600.0)
    with tempfile.TemporaryDirectory(prefix="cioaudience-bench-") as tmp:
        workdir = Path(tmp)
        env = environment(workdir)
        database = fresh_database(env)
        token = create_fixtures(env)
        port = free_port()
        with gunicorn(env, port, args.workers, ROOT / "var" / "bench-firehose-gunicorn.log"):
            config = {
                "port": port,
                "token": token,
                "rate": args.rate,
                "concurrency": args.concurrency,
                "seconds": args.seconds,
                "profiles": args.profiles,
                "pool": args.pool,
                "max_requests": args.max_requests,
            }
            driver = subprocess.run(
                [PYTHON, __file__, "_drive", json.dumps(config)],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
                timeout=args.seconds + 600,
            )
        measured = json.loads(driver.stdout.strip().splitlines()[-1])
        rows = count_rows(env)

    results = measured["results"]
    latencies = [seconds * 1000 for seconds, status in results if status == 200]
    failures: dict[int, int] = {}
    for _, status in results:
        if status != 200:
            failures[status] = failures.get(status, 0) + 1
    mode = f"closed loop, {args.concurrency} clients" if args.concurrency else f"open loop, {args.rate:g} messages/s"
    print(f"Firehose benchmark: {database}, gunicorn -w {args.workers}, {mode}, {args.profiles} profiles/message")
    print(f"  machine:          {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"  messages:         {len(results)} sent, {len(latencies)} answered 200, failures {failures or 'none'}")
    if latencies:
        print(
            f"  latency (ms):     p50 {statistics.median(latencies):.1f}   p90 {percentile(latencies, 90):.1f}   "
            f"p99 {percentile(latencies, 99):.1f}   max {max(latencies):.1f}"
        )
        print(
            f"  throughput:       {len(latencies) * args.profiles / measured['elapsed']:.0f} profiles/s "
            f"({len(latencies) / measured['elapsed']:.1f} messages/s over {measured['elapsed']:.1f} s)"
        )
    print(f"  database after:   {rows}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_setup":
        _setup()
    elif len(sys.argv) > 2 and sys.argv[1] == "_drive":
        _drive(json.loads(sys.argv[2]))
    else:
        main()
