"""Run one benchmark on two checkouts in turn, round after round, so both see the same machine.

    git archive <start-commit> | tar -x -C /tmp/before && ln -s $PWD/.venv /tmp/before/.venv
    cp bench/*.py /tmp/before/bench/          # the same benchmark code on both sides
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cio_bench .venv/bin/python bench/compare.py \\
        --before /tmp/before --rounds 3 --grep 'wall|latency' -- bench/firehose.py --concurrency 1

On a shared machine the load of other processes comes and goes; alternating the two checkouts
(before, after, before, after, ...) makes each pair meet similar conditions. It prints each
run's lines matching --grep as they come, then all of them grouped by checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="The other checkout (with its bench/ script).")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each checkout (default 3).")
    parser.add_argument("--grep", default=".", help="Regular expression selecting the lines to compare.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...], relative to each checkout.")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark to run after --")
    pattern = re.compile(args.grep)
    trees = {"before": args.before.resolve(), "after": ROOT}
    for tree in trees.values():
        if not (tree / command[0]).exists():
            sys.exit(f"{tree / command[0]} does not exist: copy the benchmark there first")
    found: dict[str, list[str]] = {label: [] for label in trees}
    for n in range(1, args.rounds + 1):
        for label, tree in trees.items():
            python = tree / ".venv" / "bin" / "python"
            run = subprocess.run(
                [str(python if python.exists() else sys.executable), *command],
                cwd=tree,
                env=dict(os.environ),
                capture_output=True,
                text=True,
            )
            if run.returncode != 0:
                sys.exit(f"{label} round {n} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
            lines = [line.rstrip() for line in run.stdout.splitlines() if pattern.search(line)]
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"--- round {n}, {label} (load average {load})", flush=True)
            for line in lines:
                print(f"  {line}", flush=True)
            found[label].extend(f"round {n}: {line.strip()}" for line in lines)
    print("\n=== side by side")
    for label, lines in found.items():
        print(f"{label}:")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    main()
