"""Mutation testing of the modules that carry the contract (`make mutation`; not in CI: slow).

Each module is mutated on its own, in a scratch copy of the project under var/mutation/<module>/,
and judged only by the few test files that are about it, so a score says how well *those*
tests pin the module down (not that some slow end-to-end test happens to trip over it).
mutmut 3 then runs, for each mutant, only the selected tests that call the mutated function.

    .venv/bin/python scripts/mutation.py                       # every module
    .venv/bin/python scripts/mutation.py attributes limits     # some of them
    .venv/bin/python scripts/mutation.py --minutes 10 breaker  # time-boxed: partial figure
    .venv/bin/python scripts/mutation.py --report              # scores of the last runs
    .venv/bin/python scripts/mutation.py --survivors breaker   # the surviving mutants, as diffs
    .venv/bin/python scripts/mutation.py --without tests/forwarding/test_claims.py claims  # "before" figure
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "var" / "mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"


@dataclass(frozen=True)
class Target:
    module: str  # the file mutated
    tests: tuple[str, ...]  # the test files (or file::test node ids) that judge it
    kind: str  # "pure" (goal 90%) or "forwarding" (goal 80%)
    deselect: tuple[str, ...] = ()  # slow tests of those files that are about something else

    @property
    def goal(self) -> float:
        return 0.9 if self.kind == "pure" else 0.8


ATTRIBUTE_TESTS = (
    "tests/forwarding/test_attributes.py",
    "tests/forwarding/test_identifiers_and_segments.py",
    "tests/ingest/test_membership_sources.py",
)
LIMIT_TESTS = (
    "tests/customerio/test_limits.py",
    "tests/customerio/test_limit_reasons_name_the_culprit.py",
    "tests/customerio/test_batch_packing_bounds.py",
)
BREAKER_TESTS = (
    "tests/connection/breaker/test_rules_at_their_edges.py",
    "tests/connection/breaker/test_outage_and_recovery.py",
    "tests/connection/breaker/test_probe_schedule.py",
)

# Seconds each, and about pacing or segment backfill rather than the module they would judge.
SLOW_RATE_TEST = "tests/forwarding/test_forward_pending.py::" + (
    "test_the_rate_limiter_keeps_every_second_under_the_connection_limit"
)
SLOW_BACKFILL_TEST = "tests/forwarding/test_segments_and_identifiers.py::" + (
    "test_2500_members_are_backfilled_into_a_new_segment_in_three_requests"
)

TARGETS: dict[str, Target] = {
    "attributes": Target("connections/services/forwarding/attributes.py", ATTRIBUTE_TESTS, "pure"),
    "limits": Target("connections/customerio/limits.py", LIMIT_TESTS, "pure"),
    "outcomes": Target(
        "connections/services/forwarding/delivery_log.py",
        (
            "tests/forwarding/test_outcomes.py",
            "tests/forwarding/test_forward_pending.py",
            "tests/outbox/test_outbox_orphans.py",
            "tests/forwarding/test_erased_mid_claim.py",
        ),
        "forwarding",
        deselect=(SLOW_RATE_TEST,),
    ),
    "breaker": Target("connections/services/connection/breaker.py", BREAKER_TESTS, "forwarding"),
    "claims": Target(
        "connections/services/forwarding/claims.py",
        ("tests/forwarding/test_claims.py", "tests/forwarding/test_forward_pending.py"),
        "forwarding",
        deselect=(SLOW_RATE_TEST,),
    ),
    "payloads": Target(
        "connections/services/forwarding/payloads.py",
        (
            "tests/forwarding/test_payload_plan.py",
            "tests/forwarding/test_forward_pending.py",
            "tests/forwarding/test_segments_and_identifiers.py",
            "tests/outbox/test_outbox_orphans.py",
        ),
        "pure",  # planning is rules over rows read up front: held to the pure modules' goal
        deselect=(SLOW_RATE_TEST, SLOW_BACKFILL_TEST),
    ),
    "flood_hold": Target(
        "connections/services/forwarding/flood_hold.py",
        ("tests/forwarding/test_flood_hold.py", "tests/forwarding/test_task_rescheduling.py"),
        "forwarding",
    ),
    "ratelimit": Target(
        "connections/customerio/ratelimit.py",
        ("tests/customerio/test_ratelimit.py", "tests/customerio/test_ratelimit_rules.py"),
        "forwarding",
    ),
}

# What the scratch copy needs besides the mutated package (mutmut copies tests/ and pyproject.toml).
ALSO_COPY = ("cioaudience", "cio_standin", "templates", "manage.py")
KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, or a timeout (the mutant made a test hang)
SURVIVED = {0}


def mutmut_config(target: Target) -> str:
    tests = [t for t in target.tests if (ROOT / t.split("::")[0]).exists()]
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["connections"]',
            f'only_mutate = ["{target.module}"]',
            f"also_copy = {json.dumps(list(ALSO_COPY))}",
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
            # A mutant that makes a test wait for ever (a socket without timeout, a sleep that
            # never ends) is a kill by timeout. mutmut's default bound, 15x the tests' measured
            # time, spent minutes per such mutant; 4x (plus 5 s) still leaves room for a busy machine.
            "timeout_multiplier = 4.0",
            "timeout_constant = 5.0",
            # Own SQLite file per forked run; quiet output; no cache in the scratch copy.
            "pytest_add_cli_args = "
            + json.dumps(
                ["-p", "tests.support.mutation_isolation", "-p", "no:cacheprovider", "-q", "-x"]
                + [arg for test in target.deselect for arg in ("--deselect", test)]
            ),
            "",
        ]
    )


def prepare(name: str, target: Target) -> Path:
    scratch = SCRATCH / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for item in ("connections", "tests", *ALSO_COPY):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, scratch / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, scratch / item)
    pyproject = (ROOT / "pyproject.toml").read_text() + mutmut_config(target)
    (scratch / "pyproject.toml").write_text(pyproject)
    return scratch


def run(name: str, target: Target, *, minutes: float, children: int) -> None:
    scratch = prepare(name, target)
    print(f"== {name}: mutating {target.module} against {', '.join(target.tests)}", flush=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DATABASE_URL", None)  # SQLite: one file per forked run (tests/support/mutation_isolation.py)
    log = (scratch / "mutmut.log").open("w")
    process = subprocess.Popen(  # noqa: S603
        [str(MUTMUT), "run", "--max-children", str(children)],
        cwd=scratch,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        # Results are saved mutant by mutant, so stopping leaves a partial but honest figure.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"   stopped after {minutes:g} min (time box)", flush=True)
    print(f"   {time.monotonic() - started:.0f} s; log: {scratch / 'mutmut.log'}", flush=True)
    print_score(name, target)


def outcome_counts(name: str, target: Target) -> dict[str, int] | None:
    meta = SCRATCH / name / "mutants" / f"{target.module}.meta"
    if not meta.exists():
        return None
    exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
    counts = {"killed": 0, "survived": 0, "no tests": 0, "not run": 0, "other": 0}
    for code in exit_codes.values():
        if code is None:
            counts["not run"] += 1
        elif code in KILLED:
            counts["killed"] += 1
        elif code in SURVIVED:
            counts["survived"] += 1
        elif code in (5, 33):
            counts["no tests"] += 1  # no selected test calls the function: counted as surviving
        else:
            counts["other"] += 1
    return counts


def score_line(name: str, target: Target) -> str:
    counts = outcome_counts(name, target)
    if counts is None:
        return f"{name:<11} not run"
    judged = counts["killed"] + counts["survived"] + counts["no tests"] + counts["other"]
    score = counts["killed"] / judged if judged else 0.0
    partial = f", {counts['not run']} not run (partial)" if counts["not run"] else ""
    verdict = "ok" if score >= target.goal else f"below the {target.goal:.0%} goal"
    return (
        f"{name:<11} {score:6.1%} killed ({counts['killed']}/{judged}; survived {counts['survived']}, "
        f"no test {counts['no tests']}, other {counts['other']}{partial}) [{target.kind}: {verdict}]"
    )


def print_score(name: str, target: Target) -> None:
    print("   " + score_line(name, target), flush=True)


def survivors(name: str, target: Target) -> None:
    counts = outcome_counts(name, target)
    if counts is None:
        sys.exit(f"{name} has not been run")
    exit_codes = json.loads((SCRATCH / name / "mutants" / f"{target.module}.meta").read_text())["exit_code_by_key"]
    for mutant, code in sorted(exit_codes.items()):
        if code in SURVIVED or code in (5, 33):
            diff = subprocess.run(  # noqa: S603
                [str(MUTMUT), "show", mutant], cwd=SCRATCH / name, capture_output=True, text=True, check=False
            )
            print(f"### {mutant} ({'survived' if code in SURVIVED else 'no test'})\n{diff.stdout}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all of them)")
    parser.add_argument("--minutes", type=float, default=30.0, help="time box per module (default 30)")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--report", action="store_true", help="only print the scores of the last runs")
    parser.add_argument("--survivors", action="store_true", help="print the surviving mutants as diffs")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="TEST_FILE",
        help="leave this test file out of the selection (to measure the score before it was written)",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(TARGETS))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; expected some of {', '.join(TARGETS)}")
    names = args.modules or list(TARGETS)
    for name in names:
        if args.survivors:
            survivors(name, TARGETS[name])
        elif not args.report:
            target = TARGETS[name]
            target = replace(target, tests=tuple(t for t in target.tests if t.split("::")[0] not in args.without))
            run(name, target, minutes=args.minutes, children=args.children)
    print("\nmutation scores (killed / mutants judged):")
    for name in names:
        print("  " + score_line(name, TARGETS[name]))


if __name__ == "__main__":
    main()
