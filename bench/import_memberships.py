"""Benchmark `manage.py import_memberships`: a generated CSV of N lines, wall time and peak memory.

    .venv/bin/python bench/import_memberships.py                    # 1,000,000 lines, SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cioaudience_bench .venv/bin/python bench/import_memberships.py
    .venv/bin/python bench/import_memberships.py --lines 100000 --format jsonl

It starts from a fresh database (as bench/firehose.py: PostgreSQL when DATABASE_URL names a
database containing "bench", otherwise a new SQLite file), creates the audience with an active
subscription (so every change queues a forward, as in production; no worker runs), writes the
file (90% add, 10% delete, names and emails on most lines), runs the command as a child
process and prints its wall time, the peak resident memory of that very process (os.wait4's
rusage) and the command's own summary. The progress bar goes to var/bench-import.log.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from firehose import PYTHON, ROOT, environment, fresh_database

AUDIENCE_ID = 4242


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="Lines in the file (default 1000000).")
    parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    parser.add_argument("--batch-size", type=int, help="import_memberships --batch-size (default: the command's).")
    parser.add_argument("--jobs", type=int, help="import_memberships --jobs (default: the command's).")
    parser.add_argument("--timeout", type=float, default=3600, help="Give up after this many seconds.")
    return parser.parse_args()


def write_file(path: Path, lines: int, fmt: str) -> None:
    rng = random.Random(11)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f) if fmt == "csv" else None
        if writer:
            writer.writerow(["customer_id", "email", "first_name", "last_name", "action"])
        for n in range(lines):
            named = rng.random() < 0.8
            row = [
                f"cust-{n:07d}",
                f"person{n}@example.com" if named else "",
                f"Fïrst {n % 997}" if named else "",
                f'Last, "{n % 991}"' if named else "",
                "delete" if rng.random() < 0.1 else "add",
            ]
            if writer:
                writer.writerow(row)
            else:
                keys = ("customer_id", "email", "first_name", "last_name", "action")
                f.write(json.dumps(dict(zip(keys, row, strict=True))) + "\n")


def create_audience(env: dict[str, str]) -> None:
    code = (
        "import django;django.setup();"
        "from connections.models import Audience,Connection;from connections.services.ingest import subscriptions;"
        "c=Connection.objects.create(name='Bench workspace',site_id='bench-site',api_key='bench-key-0000');"
        f"subscriptions.subscribe(Audience.objects.create(audience_id={AUDIENCE_ID},name='Imported'),c)"
    )
    subprocess.run(
        [PYTHON, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "cioaudience.settings"},
        check=True,
        timeout=120,
    )


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="cioaudience-bench-import-") as tmp:
        workdir = Path(tmp)
        env = environment(workdir)
        database = fresh_database(env)
        create_audience(env)
        data = workdir / f"memberships.{args.format}"
        started = time.monotonic()
        write_file(data, args.lines, args.format)
        print(f"wrote {args.lines:,} lines ({data.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")

        log_path = ROOT / "var" / "bench-import.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path = workdir / "summary.txt"
        command = [PYTHON, "manage.py", "import_memberships", str(data), "--audience", str(AUDIENCE_ID)]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        with open(log_path, "w") as log, open(summary_path, "w") as out:
            started = time.monotonic()
            child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=log)
            killer = threading.Timer(args.timeout, child.kill)
            killer.start()
            # wait4: the resource usage of this very child, not of the other processes the benchmark ran.
            _, status, usage = os.wait4(child.pid, 0)
            killer.cancel()
            wall = time.monotonic() - started
            child.returncode = os.waitstatus_to_exitcode(status)
        summary = summary_path.read_text()

    batches = f"batches of {args.batch_size}" if args.batch_size else "default batch size"
    batches += f", --jobs {args.jobs}" if args.jobs else ""
    print(f"import_memberships on {database}, {args.lines:,} {args.format} lines, {batches}")
    print(f"  machine:       {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"  exit status:   {child.returncode}")
    print(f"  wall time:     {wall:.1f} s ({args.lines / wall:,.0f} lines/s)")
    print(f"  peak memory:   {usage.ru_maxrss / 1024:.0f} MB resident (the import process; ru_maxrss)")
    print("  summary:       " + summary.strip().replace("\n", "\n                 "))


if __name__ == "__main__":
    main()
