"""A long Customer.io outage with the default settings, then a killed worker (issue: outages never lose an update).

    .venv/bin/python bench/outage.py                      # 7-minute outage, 20,000 profiles, 100,000 changes, v1
    .venv/bin/python bench/outage.py --transport v2_batch # the same with v2 batches
    .venv/bin/python bench/outage.py --outage-seconds 120 --profiles 2000 --changes 10000   # a quick look

A v1 connection by default (one request per person: the transport where an outage costs most) at its
default rate limit of 100 requests/s, two workers and beat as the README deploys them, every
timing at its default (lease, backoff, breaker, probes, sweep). While the stand-in answers every
request 503 for the outage, the changes arrive in rounds. Printed: requests sent during the
outage (and what the seed's per-profile retries would have sent), outbox rows at the peak, time
from the end of the outage to the breaker closing and to the backlog drained, deliveries failed
(must be 0), and the time from a worker's SIGKILL to the last of its profiles delivered.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from harness import (
    PYTHON,
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

SITE, KEY = "bench-outage", "sk-bench-outage-1"
AUDIENCES = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage-seconds", type=int, default=420)
    parser.add_argument("--transport", choices=["v1", "v2_batch"], default="v1")
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--kill-profiles", type=int, default=5_000, help="backlog when a worker is killed")
    return parser.parse_args()


def apply_round(profiles: int, round_: int, per_round: int) -> None:
    from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes

    start = (round_ * per_round) % profiles
    ids = [(start + n) % profiles for n in range(per_round)]
    for chunk in range(0, len(ids), 1000):
        apply_changes(
            [
                ProfileChange(
                    ProfileInput(customer_id=f"p{i}", first_name=f"r{round_}"),
                    {1 + (i + round_) % AUDIENCES: (i + round_) % 3 != 0},
                )
                for i in ids[chunk : chunk + 1000]
            ]
        )


def main() -> None:
    args = parse_args()
    port = free_port()
    env = bench_env("cioaudience_bench_outage", port)
    recreate_database(env)
    setup_django(env)
    from django.utils import timezone

    from connections.models import Audience, Connection, Delivery, Forward
    from connections.services.ingest import subscriptions

    print(f"machine: {machine()}")
    print(
        f"outage {args.outage_seconds} s, {args.profiles:,} profiles, {args.changes:,} changes, "
        f"{args.transport}, defaults"
    )
    with processes() as group:
        start_standin(group, env, port, [f"{SITE}:{KEY}::100"], validate_share=0.05)
        connection = Connection.objects.create(name="outage", site_id=SITE, api_key=KEY, transport=args.transport)
        for n in range(1, AUDIENCES + 1):
            subscriptions.subscribe(Audience.objects.create(audience_id=n, name=f"Audience {n}"), connection)
        start_workers(group, env, count=2)
        group.start("beat", [PYTHON, "-m", "celery", "-A", "cioaudience", "beat", "-s", "var/bench/beat-schedule"], env)

        standin(port, "outage", "POST", {"mode": "503", "seconds": args.outage_seconds})
        started, began = time.monotonic(), timezone.now()
        rounds = max(1, args.changes // args.profiles * 4)
        per_round = args.changes // rounds
        peak, before_open = 0, None

        def sample() -> None:
            nonlocal peak, before_open
            peak = max(peak, Forward.objects.count())
            if before_open is None and Connection.objects.filter(pk=connection.pk, state="backing_off").exists():
                before_open = standin(port, "outage")["failed_requests"]

        for round_ in range(rounds):
            apply_round(args.profiles, round_, per_round)
            sample()
            # Spread the changes over the first half of the outage.
            while time.monotonic() < started + (round_ + 1) * args.outage_seconds / 2 / rounds:
                sample()
                time.sleep(1)
        while time.monotonic() < started + args.outage_seconds:
            sample()
            time.sleep(1)
        ended = time.monotonic()
        during = standin(port, "outage")["failed_requests"]
        opened = Connection.objects.values_list("state_changed_at", flat=True).get(pk=connection.pk)

        wait_for(lambda: Connection.objects.filter(pk=connection.pk, state="active").exists(), 900, "the breaker")
        closed = time.monotonic()
        wait_for(lambda: not Forward.objects.exists(), 3600, "the backlog to drain", interval=1)
        drained = time.monotonic()
        failed = Delivery.objects.filter(status="failed").count()
        people = standin(port, f"people?site_id={SITE}")["people"]
        print(f"breaker opened {(opened - began).total_seconds():.0f} s into the outage; requests during it: {during:,}"
              f" ({before_open:,} before it opened, {during - (before_open or 0):,} probes after)")
        print(f"  (the seed sent each pending profile up to 8 times: {8 * args.profiles:,} requests, then gave up)")
        print(f"outbox rows at the peak: {peak:,} (bound: {args.profiles:,} profiles x ({AUDIENCES} audiences + 1))")
        print(f"end of outage -> breaker closed: {closed - ended:.0f} s; drained {drained - closed:.0f} s later")
        print(f"deliveries failed: {failed}; people in the stand-in: {len(people):,} of {args.profiles:,}")

        # Workers killed with SIGKILL while they hold claims: those profiles wait for the lease to
        # run out and the next sweep, then a fresh worker sends them.
        apply_round(args.profiles, rounds, args.kill_profiles)
        wait_for(lambda: Forward.objects.exclude(claim_token="").exists(), 60, "a claim in flight", interval=0.05)
        for worker in group.procs[1:3]:  # worker0 and worker1 (procs[0] is the stand-in)
            os.killpg(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        held = set(Forward.objects.exclude(claim_token="").values_list("profile_id", flat=True))
        start_workers(group, env, count=1)
        wait_for(
            lambda: not Forward.objects.filter(profile_id__in=held).exists(), 600, "the killed worker's profiles"
        )
        recovered = time.monotonic() - killed

    print(f"SIGKILL of the workers holding {len(held):,} profiles -> the last of them delivered: {recovered:.0f} s")


if __name__ == "__main__":
    main()
