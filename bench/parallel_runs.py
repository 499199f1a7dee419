"""Why a streamed run is split into lanes: streamed activations carried by K processes at once.

    .venv/bin/python bench/parallel_runs.py 200000 1     # one process carries all 200,000 people
    .venv/bin/python bench/parallel_runs.py 200000 2     # two processes, 100,000 each, at once

In one process tree, no Celery: N people are written, split into K audiences (by id modulo K,
so each spans the whole id range, as a lane's share of the work would), each subscribed on one v2
connection (toggle off, no segment, no rate limit); then K forked processes each carry one
audience's activation to the end (`backfill.queue_for`) at once, against the stand-in. Prints
people per second over all K. The run-level split (STREAM_LANES) is then chosen from the K that
goes fastest on the machine.
"""

from __future__ import annotations

import argparse
import os
import time

from harness import (
    bench_env,
    free_port,
    insert_people,
    machine,
    processes,
    recreate_database,
    setup_django,
    start_standin,
)

SITE, KEY = "bench-parallel", "sk-bench-parallel-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", type=int)
    parser.add_argument("processes", type=int)
    args = parser.parse_args()
    port = free_port()
    env = bench_env("cioaudience_bench_parallel", port)
    recreate_database(env)
    setup_django(env)
    from django.conf import settings
    from django.db import connection as db
    from django.db import connections

    from connections.models import Audience, Connection, Membership, Profile, Subscription
    from connections.services.resync import backfill
    from connections.services.resync import runs as resync

    settings.STREAM_LANES = 1  # the processes here are the split
    audiences = [Audience.objects.create(audience_id=n + 1, name=f"Part {n}") for n in range(args.processes)]
    insert_people(args.members)
    with db.cursor() as cursor:
        for n, audience in enumerate(audiences):
            cursor.execute(
                f"INSERT INTO {Membership._meta.db_table} (profile_id, audience_id, is_member, changed_at)"  # noqa: S608
                f" SELECT id, %s, true, now() FROM {Profile._meta.db_table} WHERE id %% %s = %s",
                [audience.pk, args.processes, n],
            )
        cursor.execute("ANALYZE")
    print(f"machine: {machine()}; {args.members:,} members, {args.processes} process(es)")
    with processes() as group:
        start_standin(group, env, port, [f"{SITE}:{KEY}"], validate_share=0.01)
        settings.CUSTOMERIO_US_URL = f"http://127.0.0.1:{port}"
        connection = Connection.objects.create(name="p", site_id=SITE, api_key=KEY, rate_limit=100000)
        for audience in audiences:
            Subscription.objects.create(audience=audience, connection=connection)
            resync.start(resync.Scope(connection, audience, (audience.pk,), "activation"), count=False)
        connections.close_all()  # each child opens its own
        started = time.monotonic()
        children = []
        for audience in audiences:
            child = os.fork()
            if child == 0:
                backfill.queue_for(connection.pk, audience.pk, "activation", 3600.0)
                os._exit(0)
            children.append(child)
        for child in children:
            os.waitpid(child, 0)
        seconds = time.monotonic() - started
    rate = args.members / seconds
    print(f"{args.processes} at once: {args.members:,} people in {seconds:.1f} s: {rate:,.0f} people/s")


if __name__ == "__main__":
    main()
