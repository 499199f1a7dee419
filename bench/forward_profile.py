"""Where a worker's time goes when it sends a flood's people: claims of 1,000, in-process.

    BENCH_BROKER_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/forward_profile.py [--rounds 5] [--cprofile]

It migrates a fresh PostgreSQL database (`cio_forward_profile_bench`), starts the local
Customer.io stand-in (100 requests/s, a fifth of the bodies validated, as bench/official_client.py)
and, each round, ingests the 8,000 membership changes of bench/official_client.py (2,000 people,
8 audiences, 80 Firehose messages through Django's test client, which leaves 6,000 outbox rows),
marks them due long ago (past the flood hold) and times `forward_pending` sending them: two
claims of 1,000 people, each planned, logged, sent in one v2 batch and recorded. Prints per round
the wall time and the SQL statements, then the median; with --cprofile, the functions taking the
most time in one more round. Run it with bench/compare.py to compare two checkouts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time
from datetime import timedelta

import harness
from official_client import AUDIENCES, KEY_PRODUCT, SITE_PRODUCT, changes, message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds timed (default 5)")
    parser.add_argument("--cprofile", action="store_true", help="profile one more round")
    args = parser.parse_args()

    port = harness.free_port()
    env = harness.deployed_env("cio_forward_profile_bench", port, allowed_hosts="testserver")
    harness.recreate_database(env)
    with harness.processes() as group:
        harness.start_standin(group, env, port, [f"{SITE_PRODUCT}:{KEY_PRODUCT}:us:100"], validate_share=0.2)
        harness.setup_django(env)
        run(args)


def run(args: argparse.Namespace) -> None:
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from connections.models import Audience, Connection, Forward
    from connections.services.forwarding import worker as forwarding
    from connections.services.ingest import subscriptions, tokens

    connection = Connection.objects.create(name="product", site_id=SITE_PRODUCT, api_key=KEY_PRODUCT, rate_limit=100)
    for audience_id in AUDIENCES:
        subscriptions.subscribe(
            Audience.objects.create(audience_id=audience_id, name=f"Audience {audience_id}"), connection
        )
    _, token = tokens.create_token("bench")
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    all_changes = changes()

    def flood(round_: int) -> int:
        """Ingest the 8,000 changes (new people each round); returns the outbox rows left due."""
        renamed = [(f"r{round_}-{c}", a, j) for c, a, j in all_changes]
        for start in range(0, len(renamed), 100):
            body = json.dumps(message(connection.connection_key, renamed[start : start + 100]))
            response = client.post("/api/mparticle/firehose", body, content_type="application/json")
            if response.status_code != 200:
                raise SystemExit(f"the Firehose endpoint answered {response.status_code}: {response.content[:200]!r}")
        return Forward.objects.filter(connection=connection).update(due_at=timezone.now() - timedelta(seconds=60))

    def send() -> forwarding.ForwardReport:
        report = forwarding.forward_pending(connection.pk)
        if report.succeeded != 2000 or Forward.objects.filter(connection=connection).exists():
            raise SystemExit(f"not everything was sent: {report}")
        return report

    walls = []
    for round_ in range(args.rounds):
        rows = flood(round_)
        with CaptureQueriesContext(db) as queries:
            started = time.perf_counter()
            report = send()
            walls.append((time.perf_counter() - started) * 1000)
        print(
            f"round {round_ + 1}: forward_pending sent {report.succeeded} people ({rows} outbox rows) in"
            f" {report.requests} requests: {walls[-1]:.0f} ms, {len(queries.captured_queries)} SQL statements"
        )
    print(f"forward_pending, 2,000 people in claims of 1,000: median {statistics.median(walls):.0f} ms")

    if args.cprofile:
        flood(args.rounds)
        profiler = cProfile.Profile()
        profiler.enable()
        send()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


if __name__ == "__main__":
    main()
