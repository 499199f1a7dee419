"""A manual segment backfill: 100,000 members of an audience sent to a new Customer.io segment.

    .venv/bin/python bench/segment_backfill.py [--members 100000] [--workers 2]

A v2 connection at its default rate limit (100 requests/s), two workers as deployed; the stand-in
enforces the same limit. The audience's members are already in Customer.io as people; a segment
is created and set on the subscription, which queues the backfill (through a worker, since the
audience is large). Printed: requests sent (identifies and segment adds), 429s, seconds until the
stand-in's segment holds every member.
"""

from __future__ import annotations

import argparse
import time

from harness import (
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

SITE, KEY = "bench-segments", "sk-bench-segments-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    env = bench_env("cioaudience_bench_segments", port)
    recreate_database(env)
    setup_django(env)
    from django.db import connection as db

    from connections.models import Audience, Connection, Forward, Membership, Profile, Subscription
    from connections.services.ingest import segments

    print(f"machine: {machine()}")
    audience = Audience.objects.create(audience_id=1, name="Big audience")
    connection = Connection.objects.create(name="segments", site_id=SITE, api_key=KEY)
    Subscription.objects.create(audience=audience, connection=connection)
    with db.cursor() as cursor:  # the members, written in bulk (their ingestion is not what is measured)
        cursor.execute(
            "INSERT INTO connections_profile (customer_id, email, first_name, last_name, created_at, updated_at)"
            " SELECT 'm' || n, '', '', '', now(), now() FROM generate_series(1, %s) n",
            [args.members],
        )
        cursor.execute(
            "INSERT INTO connections_membership (profile_id, audience_id, is_member, changed_at)"
            " SELECT id, %s, true, now() FROM connections_profile",
            [audience.pk],
        )
    assert Membership.objects.count() == Profile.objects.count() == args.members
    with processes() as group:
        start_standin(group, env, port, [f"{SITE}:{KEY}::100"], validate_share=0.02)
        segment_id = standin(port, "segments", "POST", {"site_id": SITE, "name": "Big audience"})["id"]
        start_workers(group, env, count=args.workers)
        started = time.monotonic()
        segments.set_segment_id(Subscription.objects.get(), segment_id)  # queues the backfill
        wait_for(
            lambda: len(standin(port, f"segments?site_id={SITE}")["segments"][0]["members"]) >= args.members,
            1800,
            "every member in the segment",
            interval=1,
        )
        elapsed = time.monotonic() - started
        wait_for(lambda: not Forward.objects.exists(), 120, "the outbox to empty", interval=0.5)
        stats = standin(port, "stats")["workspaces"][SITE]
    print(
        f"{args.members:,} members into a new segment: {elapsed:.1f} s, {stats['requests']:,} requests "
        f"({stats['by_status'].get('429', 0)} answered 429), busiest second {stats['max_requests_in_1s']}"
    )


if __name__ == "__main__":
    main()
