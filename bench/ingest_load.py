"""Sustained Firehose load with a worker forwarding at the same time: latency, freshness, web memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cio_ingest_bench .venv/bin/python bench/ingest_load.py
    ... bench/ingest_load.py --rates 10,20,40,60 --seconds 30      # a sweep, in one run
    ... bench/ingest_load.py --rates 10 --seconds 120                # freshness at 1,000 changes/s

The product as the README deploys it, on this machine: `gunicorn cioaudience.wsgi --workers 4`,
one Celery worker (2 threads) forwarding to the local Customer.io stand-in (v2 batch, the
connection's default rate limit of 100 requests/s; the stand-in records every request), Redis
as the broker (CELERY_BROKER_URL, default redis://127.0.0.1:6379/10) and PostgreSQL
(DATABASE_URL, a fresh database whose name must contain "bench").

For each rate R (messages per second, open loop: requests start on schedule whatever the
answers, latency measured from the scheduled start) it sends R x --seconds messages of
--profiles profiles (mostly new people, 1-3 audience changes each), then waits for the outbox
to drain and prints:

- latency p50 / p99 of the answers, and profile changes per second (profiles x messages / s);
- freshness: for each membership change, from the Firehose answer to the first request the
  stand-in received carrying that person with that attribute value (`"In <audience>"`, the
  connection has one attribute per audience) sent after the message; p50 / p99 / max. A change
  that repeats the person's value, or that a later message overrode before it was sent
  (coalesced), is never sent on its own: it is counted apart;
- the resident memory (VmRSS) of each gunicorn worker before the first load and after the last.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from firehose import BENCH_CONNECTION_KEY, PYTHON, ROOT, environment, fresh_database
from harness import free_port, processes, standin, start_standin, start_web, start_workers, wait_for

PATH = "/api/mparticle/firehose"
AUDIENCES = [(9001, "Bench A"), (9002, "Bench B"), (9003, "Bench C"), (9004, "Bench D"), (9005, "Bench E")]
SITE_ID, API_KEY = "bench-site", "bench-key-0000"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10", help="Messages per second, comma-separated (default 10).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Load per rate (default 30, at most 600).")
    parser.add_argument("--profiles", type=int, default=100, help="Profiles per message (default 100).")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn workers (default 4, as deployed).")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (default 1).")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="Wait this long for the outbox to drain.")
    return parser.parse_args()


# --- the client process ---------------------------------------------------------------------


def make_message(rng: random.Random, first: int, profiles: int, timestamp_ms: int) -> tuple[str, list[list]]:
    """A membership message about `profiles` people from number `first` on, and its changes."""
    user_profiles, changes = [], []
    for n in range(first, first + profiles):
        audiences = []
        for audience_id, name in rng.sample(AUDIENCES, rng.randint(1, 3)):
            action = rng.choice(("add", "add", "delete"))
            audiences.append({"audience_id": audience_id, "audience_name": name, "action": action})
            changes.append([f"cust-{n}", f"In {name}", "true" if action == "add" else "false"])
        user_profiles.append(
            {
                "user_identities": [
                    {"type": "customer", "encoding": "raw", "value": f"cust-{n}"},
                    {"type": "email", "encoding": "raw", "value": f"person{n}@example.com"},
                ],
                "mpid": str(10_000_000 + n),
                "audiences": audiences,
            }
        )
    body = {
        "type": "audience_membership_change_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": timestamp_ms,
        "firehose_version": "3.2.0",
        "account": {"account_id": 1, "account_settings": {"connectionKey": BENCH_CONNECTION_KEY}},
        "user_profiles": user_profiles,
    }
    return json.dumps(body), changes


def drive(config: dict) -> None:  # type: ignore[type-arg]
    """Open-loop load at config["rate"]; prints one JSON line: per message its times, status, changes."""
    rate, seconds, profiles = config["rate"], config["seconds"], config["profiles"]
    total = int(rate * seconds)
    rng = random.Random(config["seed"])
    # Mostly new people: every message names a fresh range; one in five people is named again later.
    bodies = []
    for i in range(total):
        first = config["first_customer"] + i * profiles
        if i and rng.random() < 0.2:
            first -= profiles * rng.randint(1, i)  # an earlier message's people
        bodies.append(make_message(rng, first, profiles, int(time.time() * 1000)))
    headers = {"Content-Type": "application/json", "Authorization": f"Token {config['token']}"}
    results: list[dict | None] = [None] * total
    next_index = iter(range(total))
    lock = threading.Lock()
    start = time.monotonic()
    wall_start = time.time()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", config["port"], timeout=30)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            scheduled = start + i / rate
            if (delay := scheduled - time.monotonic()) > 0:
                time.sleep(delay)
            body, changes = bodies[i]
            try:
                conn.request("POST", PATH, body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0
                conn.close()
            answered = time.monotonic()
            results[i] = {
                "latency": answered - scheduled,
                "sent_wall": wall_start + (scheduled - start),
                "answered_wall": wall_start + (answered - start),
                "status": status,
                "changes": changes,
            }

    threads = [threading.Thread(target=client, daemon=True) for _ in range(min(64, max(8, int(rate))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.monotonic() - start
    print(json.dumps({"elapsed": elapsed, "results": [r for r in results if r is not None]}))


# --- the benchmark ------------------------------------------------------------------------------


def setup(env: dict[str, str]) -> str:
    code = (
        "import django,json;django.setup();"
        "from connections.models import Audience,Connection;"
        "from connections.services.ingest import subscriptions,tokens;"
        f"c=Connection.objects.create(name='Bench workspace',site_id={SITE_ID!r},api_key={API_KEY!r},"
        f"connection_key={BENCH_CONNECTION_KEY!r},one_attribute_per_audience=True);"
        f"[subscriptions.subscribe(Audience.objects.create(audience_id=i,name=n),c) for i,n in {AUDIENCES!r}];"
        "print(json.dumps({'token': tokens.create_token('bench')[1]}))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
    )
    return str(json.loads(out.stdout.strip().splitlines()[-1])["token"])


def outbox_size(env: dict[str, str]) -> int:
    """Work left: forwards queued, and (FIREHOSE_APPLY=worker) messages not yet applied."""
    code = (
        "import django;django.setup();from connections.models import FirehoseMessage,Forward;"
        "print(Forward.objects.count()+FirehoseMessage.objects.filter(pending=True).count())"
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def sample_rss(master_pid: int, stop: threading.Event, into: list[tuple[float, list[float]]]) -> None:
    started = time.monotonic()
    while not stop.wait(60):
        into.append(((time.monotonic() - started) / 60, web_worker_rss_mb(master_pid)))


def web_worker_rss_mb(master_pid: int) -> list[float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


def freshness(port: int, results: list[dict], since: int) -> tuple[list[float], int, int]:
    """Seconds from each change's answer to the first stand-in request (sent after the message)
    carrying it; also how many changes were never sent on their own, and where the record list ends."""
    seen: dict[tuple[str, str], list[tuple[float, str]]] = {}
    position = since
    while True:
        page = standin(port, f"requests?site_id={SITE_ID}&since={position}&limit=2000")
        for request in page["requests"]:
            if request.get("status") not in (200, 207) or not isinstance(request.get("body"), dict):
                continue
            for action in request["body"].get("batch", ()):
                person = action.get("identifiers", {}).get("id")
                for name, value in action.get("attributes", {}).items():
                    if name.startswith("In "):
                        seen.setdefault((person, name), []).append((request["wall_time"], value))
        if page["next"] == position:
            break
        position = page["next"]
    delays, unsent = [], 0
    # Each (person, attribute)'s changes in the order they were sent. A change that repeats the
    # value before it changes nothing, so nothing is sent for it; a change that the next one
    # overrode before the value reached the stand-in was coalesced. Neither may be matched to a
    # later send of the same value (the person set back to it messages later).
    history: dict[tuple[str, str], list[tuple[float, str]]] = {}
    answered = [r for r in results if r["status"] == 200]
    for r in sorted(answered, key=lambda r: r["sent_wall"]):
        for person, name, value in r["changes"]:
            history.setdefault((person, name), []).append((r["sent_wall"], value))
    for r in answered:
        for person, name, value in r["changes"]:
            changes = history[(person, name)]
            at = changes.index((r["sent_wall"], value))
            before = changes[at - 1][1] if at else None
            overridden_at = next((t for t, v in changes[at + 1 :] if v != value), float("inf"))
            arrivals = [t for t, v in seen.get((person, name), ()) if v == value and t >= r["sent_wall"]]
            if before == value or not arrivals or min(arrivals) > overridden_at:
                # Nothing to send (the person already had this value), or coalesced into a later
                # change of the same attribute: the stand-in never sees this value on its own.
                unsent += 1
                continue
            delays.append(max(0.0, min(arrivals) - r["answered_wall"]))
    return delays, unsent, position


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    args = parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="cioaudience-bench-load-") as tmp:
        env = environment(Path(tmp))
        env.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10")
        standin_port, web_port = free_port(), free_port()
        env["CUSTOMERIO_US_URL"] = env["CUSTOMERIO_EU_URL"] = f"http://127.0.0.1:{standin_port}"
        env["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
        database = fresh_database(env)
        if env["CELERY_BROKER_URL"].startswith("redis://"):
            import redis

            redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
        token = setup(env)
        print(
            f"Sustained Firehose load: {database}, gunicorn -w {args.web_workers}, {args.workers} Celery worker(s), "
            f"FIREHOSE_APPLY={env.get('FIREHOSE_APPLY', 'worker')}"
        )
        print(f"  machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {os.getloadavg()}")
        with processes() as group:
            start_standin(
                group, env, standin_port, [f"{SITE_ID}:{API_KEY}:us"], validate_share=0.01, record_bodies=True
            )
            start_web(group, env, web_port, workers=args.web_workers)
            start_workers(group, env, args.workers)
            master = next(p for p in group.procs if "gunicorn" in " ".join(p.args))
            rss_start = web_worker_rss_mb(master.pid)
            rss_samples: list[tuple[float, list[float]]] = []
            position, first = 0, 0
            for n, rate in enumerate(rates):
                config = {
                    "port": web_port,
                    "token": token,
                    "rate": rate,
                    "seconds": min(args.seconds, 600.0),
                    "profiles": args.profiles,
                    "seed": n,
                    "first_customer": first,
                }
                first += int(rate * args.seconds) * args.profiles
                # The web workers' memory, once a minute while the load runs (flat, or growing?).
                stop = threading.Event()
                sampler = threading.Thread(target=sample_rss, args=(master.pid, stop, rss_samples), daemon=True)
                sampler.start()
                try:
                    driver = subprocess.run(
                        [PYTHON, __file__, "_drive", json.dumps(config)],
                        cwd=ROOT, check=True, capture_output=True, text=True, timeout=args.seconds + 600,
                    )
                finally:
                    stop.set()
                    sampler.join()
                measured = json.loads(driver.stdout.strip().splitlines()[-1])
                drained_at = time.monotonic()
                wait_for(lambda: outbox_size(env) == 0, args.drain_timeout, "the outbox to drain", interval=1.0)
                drain = time.monotonic() - drained_at
                results = measured["results"]
                latencies = [r["latency"] * 1000 for r in results if r["status"] == 200]
                failures = len(results) - len(latencies)
                delays, overridden, position = freshness(standin_port, results, position)
                changes = sum(len(r["changes"]) for r in results)
                achieved = len(latencies) * args.profiles / measured["elapsed"]
                print(
                    f"  rate {rate:g} msg/s = {rate * args.profiles:,.0f} profile changes/s for {args.seconds:g} s:"
                    f" answered {len(latencies)}/{len(results)} (failures {failures});"
                    f" latency p50 {statistics.median(latencies):.1f} ms, p99 {pct(latencies, 99):.1f} ms,"
                    f" max {max(latencies):.1f} ms; achieved {achieved:,.0f}"
                    f" profiles/s; outbox drained {drain:.1f} s after the load"
                )
                if delays:
                    print(
                        f"      freshness of {len(delays):,} of {changes:,} membership changes (answer -> stand-in):"
                        f" p50 {statistics.median(delays):.2f} s, p99 {pct(delays, 99):.2f} s,"
                        f" max {max(delays):.2f} s; {overridden:,} never sent on their own (no change, or coalesced)"
                    )
            rss_end = web_worker_rss_mb(master.pid)
            stats = standin(standin_port, "stats")
        print(f"  web worker RSS (MB): start {rss_start}, end {rss_end}")
        if rss_samples:
            series = ", ".join(f"{minute:.0f} min {max(sizes):.1f}" for minute, sizes in rss_samples)
            print(f"  largest web worker RSS (MB) during the load, once a minute: {series}")
        print(f"  stand-in: {stats['requests']:,} requests, by status {stats['by_status']}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_drive":
        drive(json.loads(sys.argv[2]))
    else:
        main()
