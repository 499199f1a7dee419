"""Where the milliseconds of one Firehose membership message go, in-process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cio_ingest_bench .venv/bin/python bench/ingest_profile.py
    ... bench/ingest_profile.py --messages 300 --cprofile 40 --explain

It starts from a fresh database (as bench/firehose.py: PostgreSQL when DATABASE_URL names a
database containing "bench", otherwise a new SQLite file), creates a connection subscribed to
five audiences and an inbound token, then posts --messages audience_membership_change_requests
of --profiles profiles (mostly new people, drawn from --pool customer ids) through Django's test
client: the whole view (authentication, parsing, ingestion, the answer), no HTTP server. It
prints the median and p90 wall time per message, the SQL statements per message and the time
the client spent waiting for them; with --cprofile, the functions taking the most time over a
second round of messages; with --explain, each statement of one more message replayed under
EXPLAIN (ANALYZE) inside a transaction that is rolled back (PostgreSQL only), next to the time
the client saw: the gap is Python and round trips, not the database.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from firehose import ROOT, environment, fresh_database, message

PATH = "/api/mparticle/firehose"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="Messages timed (default 300).")
    parser.add_argument("--profiles", type=int, default=100, help="Profiles per message (default 100).")
    parser.add_argument("--pool", type=int, default=1_000_000, help="Distinct customer ids (default 1000000).")
    parser.add_argument("--cprofile", type=int, default=0, help="Profile N more messages; print the top functions.")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE one message's statements.")
    parser.add_argument("--steps", type=int, default=0, help="Time each step of N more messages (no profiler).")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="cioaudience-bench-profile-") as tmp:
        env = environment(Path(tmp))
        database = fresh_database(env)
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        run(args, database)


def run(args: argparse.Namespace, database: str) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from firehose import AUDIENCES, BENCH_CONNECTION_KEY

    from connections.models import Audience, Connection
    from connections.services.ingest import subscriptions, tokens

    site = Connection.objects.create(
        name="Bench workspace", site_id="bench-site", api_key="bench-key-0000", connection_key=BENCH_CONNECTION_KEY
    )
    for audience_id, name in AUDIENCES:
        subscriptions.subscribe(Audience.objects.create(audience_id=audience_id, name=name), site)
    _, token = tokens.create_token("bench")
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")
    rng = random.Random(5)

    def post(body: str) -> None:
        response = client.post(PATH, body, content_type="application/json")
        if response.status_code != 200:
            raise SystemExit(f"answered {response.status_code}: {response.content[:300]!r}")

    for _ in range(20):  # warm up: imports, the connection, caches
        post(message(rng, args.profiles, args.pool))
    bodies = [message(rng, args.profiles, args.pool) for _ in range(args.messages)]
    walls, counts, sql_times = [], [], []
    for body in bodies:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            post(body)
            walls.append((time.perf_counter() - started) * 1000)
        counts.append(len(queries.captured_queries))
        sql_times.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)

    print(f"Firehose message in-process: {database}, {args.profiles} profiles/message, mostly new people")
    print(f"  messages:          {args.messages}")
    print(f"  wall (ms):         median {statistics.median(walls):.1f}   p90 {pct(walls, 90):.1f}")
    print(f"  SQL statements:    median {statistics.median(counts):.0f} per message")
    print(f"  waiting for SQL:   median {statistics.median(sql_times):.1f} ms per message (client side)")

    if args.cprofile:
        more = [message(rng, args.profiles, args.pool) for _ in range(args.cprofile)]
        profiler = cProfile.Profile()
        profiler.enable()
        for body in more:
            post(body)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        print(f"\ncProfile over {args.cprofile} messages (times are totals):")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])

    if args.steps:
        steps(post, [message(rng, args.profiles, args.pool) for _ in range(args.steps)])

    if args.explain and connection.vendor == "postgresql":
        explain(post, message(rng, args.profiles, args.pool))


def explain(post, body: str) -> None:  # type: ignore[no-untyped-def]
    """Run the message, roll it back, replay each statement under EXPLAIN ANALYZE, roll back again."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            sid = transaction.savepoint()
            with CaptureQueriesContext(connection) as queries:
                post(body)
            transaction.savepoint_rollback(sid)
            print("\nEXPLAIN ANALYZE of each statement of one message (replayed, then rolled back):")
            print(f"  {'client ms':>9}  {'server ms':>9}  statement")
            with connection.cursor() as cursor:
                for q in queries.captured_queries:
                    sql = q["sql"]
                    if sql.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")):
                        continue
                    if sql.startswith("SET "):  # a setting the next statements rely on: applied, not explained
                        cursor.execute(sql)
                        continue
                    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
                    plan = cursor.fetchone()[0]
                    plan = json.loads(plan) if isinstance(plan, str) else plan
                    server = plan[0]["Execution Time"] + plan[0].get("Planning Time", 0)
                    print(f"  {float(q['time']) * 1000:9.2f}  {server:9.2f}  {' '.join(sql.split())[:110]}")
            raise Rollback
    except Rollback:
        pass


# (module, attribute, label): each step is timed where its caller looks it up; indented labels
# are parts of the step above them.
STEPS = [
    ("connections.firehose.views", "authenticate", "token"),
    ("connections.firehose.views", "decode_body", "decode (json.loads and checks)"),
    ("connections.firehose.views", "parse_message", "parse"),
    ("connections.firehose.ingest", "record_message", "record the message id"),
    ("connections.firehose.ingest", "named_connection", "the connection"),
    ("connections.firehose.ingest", "store_segment_ids", "segment ids"),
    ("connections.firehose.ingest", "apply_changes", "apply_changes"),
    ("connections.services.ingest.memberships", "ensure_audiences", "  audiences"),
    ("connections.services.ingest.profile_rows", "resolve", "  profiles"),
    ("connections.services.ingest.profile_rows", "_fetch", "    found (stored ones, locked)"),
    ("connections.services.ingest.profile_rows", "_insert", "    inserted (new ones)"),
    ("connections.services.ingest.profile_rows", "_update", "    updated (changed ones)"),
    ("connections.services.ingest.membership_rows", "record", "  memberships and outbox"),
    ("connections.services.ingest.memberships", "connections_forwarding_profiles", "  identity forwards"),
    ("connections.services.outbox.queue", "wake_workers", "  wake workers"),
    ("connections.services.visibility.firehose_counts", "count_request", "the request count"),
]


def steps(post, bodies: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The median time of each step per message, timed by a wrapper around each function."""
    import importlib

    from django.db import connection

    spent: dict[str, float] = {}

    def timed(label: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

        return wrapper

    originals = []
    for module_name, attribute, label in STEPS:
        module = importlib.import_module(module_name)
        originals.append((module, attribute, getattr(module, attribute)))
        setattr(module, attribute, timed(label, getattr(module, attribute)))
    connection.commit = timed("commit", connection.commit)  # what atomic() calls at its end
    per_step: dict[str, list[float]] = {}
    walls = []
    try:
        for body in bodies:
            spent.clear()
            started = time.perf_counter()
            post(body)
            walls.append((time.perf_counter() - started) * 1000)
            for label, seconds in spent.items():
                per_step.setdefault(label, []).append(seconds * 1000)
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)
        del connection.commit
    print(f"\nEach step of {len(bodies)} more messages, median ms per message (a wrapper per function, no profiler):")
    print(f"  {'whole request':<34} {statistics.median(walls):6.2f}")
    top = 0.0
    for label in [label for _, _, label in STEPS] + ["commit"]:
        if label in per_step:
            median = statistics.median(per_step[label])
            if not label.startswith(" "):
                top += median
            print(f"  {label:<34} {median:6.2f}")
    print(f"  {'the rest (Django, the view, HTTP)':<34} {statistics.median(walls) - top:6.2f}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


if __name__ == "__main__":
    main()
