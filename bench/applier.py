"""Firehose changes applied per second by the worker-side applier (FIREHOSE_APPLY=worker), sustained.

    createdb -h 127.0.0.1 -U postgres cio_applier_bench       # any name containing "bench"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cio_applier_bench .venv/bin/python bench/applier.py
    ... bench/applier.py --seconds 60 --runs baseline:1,new:1,new:2      # the default: side by side
    ... bench/applier.py --cprofile 200 --runs baseline:1,new:1          # where one applier's time goes

A backlog of --messages stored audience_membership_change_requests of --profiles profiles each
(people drawn from --pool, so mostly new people, 1-3 audience changes each, 5 audiences with
active subscriptions on one connection) is made once and copied (a template database) for each
run, so every run starts from the same rows. A run is "MODE:N": N applier processes, each
applying for --seconds:

- `baseline`: the applier as it was before issue 29 (`connections/firehose/inbox.py` read from
  commit BASELINE_COMMIT with `git show`): oldest first, 5 messages per transaction, each
  message's own statements, one applier at a time (an advisory lock);
- `new`: this checkout's `inbox.apply_pending`.

It prints profile changes applied per second over the whole run (a change is one profile of a
message, as bench/ingest_load.py counts them) and the lowest and highest 10-second window, so a
rate that falls is seen; a backlog drained before the end is said (then the rate is a lower
bound). Nothing forwards: no Celery worker runs, forwards stay queued. --cprofile M applies M
messages in this process instead, under cProfile, with the time spent waiting for SQL by kind of
statement.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from firehose import AUDIENCES, BENCH_CONNECTION_KEY, PYTHON, ROOT, environment

BASELINE_COMMIT = "c02dff6"  # main before issue 29's parallel applier
WINDOW = 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="baseline:1,new:1,new:2", help="MODE:N,... (default baseline:1,new:1,new:2)")
    parser.add_argument("--seconds", type=float, default=60.0, help="How long each run applies (default 60).")
    parser.add_argument("--messages", type=int, default=12_000, help="Messages in the backlog (default 12000).")
    parser.add_argument("--profiles", type=int, default=100, help="Profiles per message (default 100).")
    parser.add_argument("--pool", type=int, default=2_000_000, help="Distinct people drawn from (default 2000000).")
    parser.add_argument("--batch", type=int, default=0, help="Messages per batch of `new` (default: its own).")
    parser.add_argument("--cprofile", type=int, default=0, help="Profile M messages in-process (no timed runs).")
    return parser.parse_args()


# --- in the child processes -----------------------------------------------------------------


def _django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "cioaudience.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def baseline_inbox():  # type: ignore[no-untyped-def]
    """The applier as it was before issue 29, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:connections/firehose/inbox.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("baseline_inbox", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE_COMMIT}:inbox.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def applier(mode: str):  # type: ignore[no-untyped-def]
    if mode == "baseline":
        return baseline_inbox()
    from connections.firehose import inbox

    return inbox


def body(rng: random.Random, profiles: int, pool: int, timestamp_ms: int) -> str:
    user_profiles = []
    for n in rng.sample(range(pool), profiles):
        audiences = [
            {"audience_id": audience_id, "audience_name": name, "action": rng.choice(("add", "add", "delete"))}
            for audience_id, name in rng.sample(AUDIENCES, rng.randint(1, 3))
        ]
        if rng.random() < 0.2:
            audiences[0]["user_attributes"] = [{"key": "$FirstName", "value": f"First{n}", "action": "upsert"}]
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
    return json.dumps(
        {
            "type": "audience_membership_change_request",
            "id": str(uuid.uuid4()),
            "timestamp_ms": timestamp_ms,
            "firehose_version": "3.2.0",
            "account": {"account_id": 1, "account_settings": {"connectionKey": BENCH_CONNECTION_KEY}},
            "user_profiles": user_profiles,
        }
    )


def _fill(config: dict) -> None:  # type: ignore[type-arg]
    """The connection, its subscriptions and the backlog, stored as `ingest.accept` stores a message."""
    _django()
    from django.db import transaction

    from connections.firehose import ingest
    from connections.firehose.messages import decode_body, parse_message
    from connections.models import Audience, Connection
    from connections.services.ingest import subscriptions

    connection = Connection.objects.create(
        name="Bench workspace", site_id="bench-site", api_key="bench-key-0000", connection_key=BENCH_CONNECTION_KEY
    )
    for audience_id, name in AUDIENCES:
        subscriptions.subscribe(Audience.objects.create(audience_id=audience_id, name=name), connection)
    rng = random.Random(29)
    start_ms = int(time.time() * 1000) - 3_600_000
    for first in range(0, config["messages"], 200):
        with transaction.atomic():
            for n in range(first, min(first + 200, config["messages"])):
                text = body(rng, config["profiles"], config["pool"], start_ms + n)
                message = parse_message(decode_body(text.encode()))
                ingest.record_message(message.envelope, ingest.answer_for(message), body=text)


def _apply(config: dict) -> None:  # type: ignore[type-arg]
    _django()
    module = applier(config["mode"])
    batch = {"batch_size": config["batch"]} if config.get("batch") and config["mode"] == "new" else {}
    applied, _ = module.apply_pending(time_budget=config["seconds"], **batch)
    print(json.dumps({"applied": applied}))


def _cprofile(config: dict) -> None:  # type: ignore[type-arg]
    _django()
    from django.db import connection

    module = applier(config["mode"])
    sql: dict[str, list[float]] = {}

    def timed(execute, sql_text, params, many, context):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            kind = " ".join(sql_text.split()[:3])[:60]
            sql.setdefault(kind, []).append(time.perf_counter() - started)

    profiler = cProfile.Profile()
    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        profiler.enable()
        applied = 0
        while applied < config["messages"]:
            count, _ = module.apply_pending(time_budget=0.0)
            if not count:
                break
            applied += count
        profiler.disable()
    wall = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    waited = sum(sum(v) for v in sql.values())
    rate = applied * config["profiles"] / wall
    print(f"\n== {config['mode']}: {applied} messages in {wall:.2f} s ({rate:,.0f} changes/s)")
    print(f"   waiting for SQL {waited:.2f} s ({100 * waited / wall:.0f}% of the wall time), statements by kind:")
    for kind, times in sorted(sql.items(), key=lambda item: -sum(item[1]))[:12]:
        print(f"     {sum(times):7.2f} s  {len(times):6d} x  {kind}")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:9000])


# --- the parent -----------------------------------------------------------------------------


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", url, "-Atqc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def child(env: dict[str, str], command: str, config: dict) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [PYTHON, __file__, command, json.dumps(config)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def main() -> None:
    args = parse_args()
    env = environment(Path(tempfile.gettempdir()))
    env["FIREHOSE_APPLY"] = "worker"
    url = env["DATABASE_URL"]
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database whose name contains 'bench'")
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to recreate database {name!r}: its name must contain 'bench'")
    admin = parsed._replace(path="/postgres").geturl()
    template = f"{name}_template"
    psql(admin, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    psql(admin, f'CREATE DATABASE "{template}"')
    template_env = {**env, "DATABASE_URL": parsed._replace(path=f"/{template}").geturl()}
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=template_env, check=True, timeout=300)
    messages = args.cprofile or args.messages
    started = time.monotonic()
    config = {"messages": messages, "profiles": args.profiles, "pool": args.pool}
    if child(template_env, "_fill", config).wait() != 0:
        raise SystemExit("filling the backlog failed")
    print(f"backlog: {messages:,} messages of {args.profiles} profiles, made in {time.monotonic() - started:.0f} s")
    print(f"machine: {os.cpu_count()} cores, load average before the runs {os.getloadavg()}")

    for run in args.runs.split(","):
        mode, _, count = run.partition(":")
        appliers = int(count or 1)
        psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        psql(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        if args.cprofile:
            proc = child(env, "_cprofile", {**config, "mode": mode})
            print(proc.communicate()[0])
            continue
        time.sleep(2)
        load = os.getloadavg()[0]
        begin = time.monotonic()
        run_config = {"mode": mode, "seconds": args.seconds, "batch": args.batch}
        procs = [child(env, "_apply", run_config) for _ in range(appliers)]
        samples = [(0.0, 0)]
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            done = int(psql(url, "SELECT count(*) FROM connections_firehosemessage WHERE NOT pending"))
            samples.append((time.monotonic() - begin, done))
        for p in procs:
            p.communicate()
        report(run, args, samples, load, messages)
    # keep template


def report(
    run: str, args: argparse.Namespace, samples: list[tuple[float, int]], load: float, backlog: int
) -> None:
    windows = []
    for t, done in samples:
        earlier = [(s, d) for s, d in samples if s <= t - WINDOW]
        if earlier:
            s, d = earlier[-1]
            windows.append((done - d) * args.profiles / (t - s))
    # The rate over the first --seconds (the appliers finish the batch they are in after it).
    within = max((d for t, d in samples if t <= args.seconds + 0.5), default=0)
    drained = next((t for t, d in samples if d >= backlog), None)
    elapsed = min(args.seconds, drained) if drained else args.seconds
    rate = within * args.profiles / elapsed
    window = f"10-s windows {min(windows):,.0f}-{max(windows):,.0f}" if windows else "no 10-s window"
    note = f", backlog drained at {drained:.0f} s: a lower bound" if drained and drained < args.seconds else ""
    print(
        f"{run:<12} {rate:>8,.0f} changes/s over {elapsed:.0f} s ({within:,} messages; {window}; "
        f"load before {load:.2f}{note})"
    )


if __name__ == "__main__":
    commands = {"_fill": _fill, "_apply": _apply, "_cprofile": _cprofile}
    if len(sys.argv) > 2 and sys.argv[1] in commands:
        commands[sys.argv[1]](json.loads(sys.argv[2]))
    else:
        main()
