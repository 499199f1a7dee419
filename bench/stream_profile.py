"""Where a streamed activation's time goes: one worker's turn under cProfile, at N members.

    .venv/bin/python bench/stream_profile.py 50000

In one process (no Celery): N people are written with one INSERT ... SELECT each, a v2
connection (one attribute per audience, a manual segment) is subscribed, and the run's pages
are streamed to the stand-in (no rate limit: the cost of our side alone) under cProfile.
Prints people per second and the top of the profile by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from harness import (
    bench_env,
    free_port,
    insert_people,
    machine,
    processes,
    recreate_database,
    setup_django,
    standin,
    start_standin,
)

SITE, KEY = "bench-stream", "sk-bench-stream-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", type=int)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true", help="time it without cProfile's overhead")
    args = parser.parse_args()
    port = free_port()
    env = bench_env("cioaudience_bench_stream", port)
    recreate_database(env)
    setup_django(env)
    from django.db import connection as db

    from connections.models import Audience, Connection, Membership, Profile, Subscription
    from connections.services.resync import backfill

    audience = Audience.objects.create(audience_id=1, name="Streamed")
    insert_people(args.members)
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Membership._meta.db_table} (profile_id, audience_id, is_member, changed_at)"  # noqa: S608
            f" SELECT id, %s, true, now() FROM {Profile._meta.db_table}",
            [audience.pk],
        )
        cursor.execute("ANALYZE")
    print(f"machine: {machine()}; {args.members:,} members")
    with processes() as group:
        start_standin(group, env, port, [f"{SITE}:{KEY}"], validate_share=0.01)
        segment_id = standin(port, "segments", "POST", {"site_id": SITE, "name": "Streamed"})["id"]
        connection = Connection.objects.create(name="s", site_id=SITE, api_key=KEY, one_attribute_per_audience=True)
        from django.conf import settings

        settings.CUSTOMERIO_US_URL = f"http://127.0.0.1:{port}"
        Subscription.objects.create(audience=audience, connection=connection, customerio_segment_id=segment_id)
        from connections.services.resync import runs as resync

        resync.start(resync.Scope(connection, audience, (audience.pk,), "activation"), count=False)
        connection.rate_limit = 100000
        Connection.objects.filter(pk=connection.pk).update(rate_limit=100000)
        profiler = cProfile.Profile()
        timings: dict[str, list[float]] = {}

        def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                timings.setdefault(" ".join(sql.split())[:110], []).append(time.perf_counter() - began)

        started = time.monotonic()
        with db.execute_wrapper(timed):
            if not args.no_profile:
                profiler.enable()
            turn = backfill.queue_for(connection.pk, audience.pk, "activation", 3600.0)
            profiler.disable()
        seconds = time.monotonic() - started
    people = turn.run.queued
    print(f"finished={turn.finished} people={people:,} in {seconds:.1f} s: {people / seconds:,.0f} people/s")
    print("SQL statements by total time (count, total s, statement):")
    for sql, spent in sorted(timings.items(), key=lambda item: -sum(item[1]))[:20]:
        print(f"{len(spent):6d} {sum(spent):7.3f}  {sql}")
    for key in () if args.no_profile else ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
