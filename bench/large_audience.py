"""A large audience end to end: import, activation, resync and what the log grows, at N members.

    .venv/bin/python bench/large_audience.py 1000000
    .venv/bin/python bench/large_audience.py 100000 --skip resync --workers 2

As deployed, on this machine's PostgreSQL and Redis: one Celery worker (concurrency 2) with
beat, and the stand-in enforcing `--rate` requests per second on a v2 workspace that has an App
API key. The steps, each timed:

1. import: `import_memberships` of a CSV of N new people into an audience that no connection
   forwards yet (nothing is queued);
2. activation: the subscription (one attribute per audience, a manual segment) is activated; the
   clock stops when the stand-in holds all N with `In <audience>` = "true" and the segment holds
   all N (seen within 0.2 s from its request counters, then confirmed by its tally). Printed with
   the requests, the 429s, the busiest second, the workers' resident memory at each quarter of the
   way (flat or not), and what the forwarding log and the outbox grew (`pg_total_relation_size`),
   per person sent;
3. resync: `manage.py resync --connection` (it sends, a large run's lanes from processes of its
   own), until it returns.

The floor is the API's own limit: N people need N/1000 identify batches plus N/1000 segment adds,
at `--rate` requests per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from harness import (
    LOGS,
    PYTHON,
    ROOT,
    bench_env,
    free_port,
    machine,
    processes,
    recreate_database,
    setup_django,
    standin,
    start_standin,
    start_workers,
    wait_for,
)

from tests.support.processes import celery_beat

SITE, KEY, APP_KEY = "bench-large", "sk-bench-large-1", "app-bench-large-1"
AUDIENCE_ID, AUDIENCE_NAME = 1, "Large audience"
ATTRIBUTE = f"In {AUDIENCE_NAME}"
# Everything an activation or a resync grows: the forwarding logs (per person, and per request:
# a partitioned table, counted with its partitions), the outbox and the runs.
GROWING_TABLES = ("connections_delivery", "connections_batchdelivery", "connections_forward", "connections_resyncrun")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", type=int, help="N: people in the audience")
    parser.add_argument("--workers", type=int, default=1, help="Celery workers, concurrency 2 each (default 1)")
    parser.add_argument("--rate", type=int, default=100, help="the stand-in's limit, requests/s (default 100)")
    parser.add_argument("--skip", action="append", choices=["resync"], default=[], help="leave a step out")
    parser.add_argument("--timeout", type=float, default=7200, help="give up on a step after this many seconds")
    args = parser.parse_args()
    port = free_port()
    env = bench_env("cioaudience_bench_large", port)
    recreate_database(env)
    setup_django(env)
    from connections.models import Audience, Connection, Subscription

    print(f"machine: {machine()}; {args.members:,} members, {args.workers} worker(s), {args.rate} requests/s")
    results: dict[str, object] = {"members": args.members, "workers": args.workers, "rate": args.rate}
    audience = Audience.objects.create(audience_id=AUDIENCE_ID, name=AUDIENCE_NAME)
    connection = Connection.objects.create(
        name="large", site_id=SITE, api_key=KEY, app_api_key=APP_KEY, one_attribute_per_audience=True
    )
    results["import_s"] = import_members(env, args.members, args.timeout)

    with processes() as group:
        start_standin(group, env, port, [f"{SITE}:{KEY}::{args.rate}:{APP_KEY}"], validate_share=0.01)
        segment_id = standin(port, "segments", "POST", {"site_id": SITE, "name": AUDIENCE_NAME})["id"]
        subscription = Subscription.objects.create(
            audience=audience,
            connection=connection,
            status=Subscription.Status.INACTIVE,
            customerio_segment_id=segment_id,
        )
        start_workers(group, env, count=args.workers)
        group.start("beat", celery_beat(PYTHON, LOGS / "large-beat-schedule"), env)
        from cioaudience.celery import app

        wait_for(lambda: len(app.control.ping(timeout=1)) >= args.workers, 120, "the workers to answer a ping")
        before = table_bytes()
        started = time.monotonic()
        from connections.services.ingest import subscriptions

        subscriptions.activate(subscription)
        rss = wait_for_everyone(port, segment_id, args.members, args.timeout, group)
        results["activation_s"] = round(time.monotonic() - started, 1)
        wait_for(lambda: drained(), 600, "the outbox and the log to settle", interval=1)
        grown = {table: size - before[table] for table, size in table_bytes().items()}
        stats = standin(port, "stats")["workspaces"][SITE]
        results.update(
            activation_requests=stats["requests"],
            activation_429=stats["by_status"].get("429", 0),
            busiest_second=stats["max_requests_in_1s"],
            worker_rss_mb_by_quarter=rss,
            activation_grown_bytes=grown,
            activation_bytes_per_person=round(sum(grown.values()) / args.members, 1),
            api_floor_s=round(2 * -(-args.members // 1000) / args.rate, 1),
        )
        if "resync" not in args.skip:
            started = time.monotonic()
            command = [
                PYTHON,
                "manage.py",
                "resync",
                "--connection",
                str(connection.pk),
                "--stall-timeout",
                "600",
                "-v0",
            ]
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=args.timeout, stdout=subprocess.DEVNULL)
            results["resync_s"] = round(time.monotonic() - started, 1)
            wait_for(lambda: drained(), 600, "the outbox and the log to settle", interval=1)
            results["after_resync_bytes"] = table_bytes()
    print(json.dumps(results, indent=2))


def import_members(env: dict[str, str], members: int, timeout: float) -> float:
    """Seconds `import_memberships` takes for N new people (the file is written first, not timed)."""
    path = LOGS / "large-audience.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("customer_id,email,first_name,last_name,action\n")
        f.writelines(f"p{n:08d},p{n}@example.com,,,add\n" for n in range(members))
    started = time.monotonic()
    command = [PYTHON, "manage.py", "import_memberships", str(path), "--audience", str(AUDIENCE_ID), "-v0"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    seconds = round(time.monotonic() - started, 1)
    path.unlink()
    return seconds


def wait_for_everyone(port: int, segment_id: int, members: int, timeout: float, group) -> list[float]:  # type: ignore[no-untyped-def]
    """Wait until every member has the attribute and is in the segment; the workers' RSS at each quarter.

    Progress is read from the stand-in's request counters, which cost it nothing: its tally walks
    every person under the lock its requests need (at 10,000,000 people, asked every second, that
    held the stand-in for most of each second and made it the bound). Once the requests the
    activation needs (an identify and a segment add per 1,000) were accepted, the tally confirms,
    every 5 s until it does.
    """
    rss: list[float] = []
    needed = 2 * -(-members // 1000)
    tallied = [0.0]

    def done() -> bool:
        accepted = standin(port, "stats")["workspaces"][SITE]["by_status"].get("200", 0)
        while len(rss) < 4 and accepted >= needed * (len(rss) + 1) / 4:
            rss.append(round(workers_rss_mb(group), 1))
        if accepted < needed or time.monotonic() - tallied[0] < 5:
            return False
        tallied[0] = time.monotonic()
        tally = standin(port, f"tally?site_id={SITE}&attribute={ATTRIBUTE.replace(' ', '%20')}")
        return min(tally["values"].get("true", 0), tally["segment_members"].get(str(segment_id), 0)) >= members

    wait_for(done, timeout, "every member in Customer.io (attribute and segment)", interval=0.2)
    return rss


def workers_rss_mb(group) -> float:  # type: ignore[no-untyped-def]
    """Resident memory of every worker process (parents and pool children), in MB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            session = int(Path(status.parent / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, ValueError, IndexError):
            continue
        if group.names.get(session, "").startswith("worker"):
            total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS")), 0)
    return total / 1024


def drained() -> bool:
    from connections.models import Delivery, Forward, ResyncRun

    return not (
        Forward.objects.exists()
        or Delivery.objects.filter(status=Delivery.Status.PENDING).exists()
        or ResyncRun.objects.filter(status=ResyncRun.Status.RUNNING).exists()
    )


def table_bytes() -> dict[str, int]:
    from django.db import connection as db

    with db.cursor() as cursor:
        # A partitioned table's own size is 0: its partitions (pg_partition_tree) hold the rows.
        cursor.execute(
            "SELECT c.relname, (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint"
            " FROM pg_partition_tree(c.oid) t) FROM pg_class c WHERE c.relname = ANY(%s)",
            [list(GROWING_TABLES)],
        )
        return dict(cursor.fetchall())


if __name__ == "__main__":
    main()
