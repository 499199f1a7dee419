"""Benchmark: the per-connection rate limiter under a large backlog, with two workers.

A connection limited to RATE requests per second, transport v1 (one request per profile,
so requests are plentiful), a backlog far larger than the measuring window can drain, two
Celery worker processes on Redis. The stand-in enforces the same limit (answering 429 above
it) and measures every sliding one-second window. Prints the busiest window seen by the
stand-in, the 429s, and the utilisation (accepted requests / (RATE x seconds)).

    .venv/bin/python bench/ratelimit.py [--rate 100] [--seconds 60] [--backlog 10000]
"""

from __future__ import annotations

import argparse
import time

import harness

SITE, KEY = "bench-rate", "bench-rate-key-0001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    port = harness.free_port()
    env = harness.bench_env("cioaudience_bench_rate", port)
    harness.recreate_database(env)
    harness.setup_django(env)

    from connections.models import Audience, Connection
    from connections.services.ingest import subscriptions
    from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes

    connection = Connection.objects.create(name="rate", site_id=SITE, api_key=KEY, transport="v1", rate_limit=args.rate)
    subscriptions.subscribe(Audience.objects.create(audience_id=1, name="Backlog"), connection)
    apply_changes([ProfileChange(ProfileInput(customer_id=f"p{i}"), {1: True}) for i in range(args.backlog)])

    with harness.processes() as group:
        harness.start_standin(group, env, port, [f"{SITE}:{KEY}:us:{args.rate}"], validate_share=0.05)
        harness.start_workers(group, env, args.workers)
        # Let the workers start, then measure a steady window.
        harness.wait_for(lambda: harness.standin(port, "stats")["requests"] > 0, 60, "the first request")
        time.sleep(2)
        before = harness.standin(port, "stats")["workspaces"][SITE]
        time.sleep(args.seconds)
        after = harness.standin(port, "stats")["workspaces"][SITE]

    accepted = after["by_status"].get("200", 0) - before["by_status"].get("200", 0)
    rejected = after["by_status"].get("429", 0)
    print(f"machine: {harness.machine()}")
    print(f"rate limit {args.rate}/s, {args.workers} workers x 2 threads, v1, backlog {args.backlog} profiles")
    print(f"{'busiest 1-second window at the stand-in':45} {after['max_requests_in_1s']} requests")
    print(f"{'requests answered 429 (over the limit)':45} {rejected}")
    print(f"{'accepted in ' + str(args.seconds) + ' s':45} {accepted}")
    print(f"{'utilisation':45} {accepted / (args.rate * args.seconds):.1%}")
    ok = after["max_requests_in_1s"] <= args.rate and accepted >= 0.9 * args.rate * args.seconds
    print("PASS" if ok else "FAIL", "(target: no window above the limit, utilisation >= 90%)")


if __name__ == "__main__":
    main()
