"""Benchmark: this product against a loop over the official `customerio` client, side by side.

The same 8,000 membership changes (2,000 profiles x 4 changes over 8 audiences; toggle off,
v2 batch) reach two workspaces of one stand-in, each limited to RATE requests per second
(429 above it):

(a) this product, end to end: Firehose messages of 100 changes into gunicorn, Celery workers on
    Redis, PostgreSQL; timed from the first message to the moment the stand-in holds the final
    state of every profile;
(b) the official client: `CustomerIO.identify` once per change with the attributes a naive
    integration would send (the profile's SegmentMembership after that change), pacing itself
    at RATE and retrying 429s.

Both must end in the identical stand-in state. Prints seconds, requests and updates per second.

    .venv/bin/python bench/official_client.py [--rate 100] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from collections import defaultdict

import harness
import requests

SITE_PRODUCT, KEY_PRODUCT = "bench-product", "bench-product-key-01"
SITE_OFFICIAL, KEY_OFFICIAL = "bench-official", "bench-official-key-01"
AUDIENCES = list(range(1, 9))
PROFILES = 2000


def changes() -> list[tuple[str, int, bool]]:
    """8,000 (customer_id, audience_id, joins) in rounds: each profile joins three audiences, then leaves one."""
    rng = random.Random(42)
    plan = {f"c{i}": rng.sample(AUDIENCES, 3) for i in range(PROFILES)}
    rounds = [
        [(c, a[0], True) for c, a in plan.items()],
        [(c, a[1], True) for c, a in plan.items()],
        [(c, a[2], True) for c, a in plan.items()],
        [(c, a[0], False) for c, a in plan.items()],
    ]
    return [change for round_ in rounds for change in round_]


def final_state(all_changes: list[tuple[str, int, bool]]) -> dict[str, dict[str, str]]:
    members: dict[str, set[int]] = defaultdict(set)
    for customer_id, audience_id, joins in all_changes:
        (members[customer_id].add if joins else members[customer_id].discard)(audience_id)
    return {c: {"SegmentMembership": ",".join(f"'{a}'" for a in sorted(m))} for c, m in members.items()}


def message(connection_key: str, batch: list[tuple[str, int, bool]]) -> dict:
    return {
        "type": "audience_membership_change_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": int(time.time() * 1000),
        "firehose_version": "3.2.0",
        "account": {"account_id": 1, "account_settings": {"connectionKey": connection_key}},
        "user_profiles": [
            {
                "user_identities": [{"type": "customer", "encoding": "raw", "value": c}],
                "audiences": [{"audience_id": a, "audience_name": f"Audience {a}", "action": "add" if j else "delete"}],
            }
            for c, a, j in batch
        ],
    }


def run_product(env, port, web_port, all_changes, expected, clients: int) -> tuple[float, int]:
    harness.setup_django(env)
    from connections.models import Audience, Connection
    from connections.services import subscriptions, tokens

    connection = Connection.objects.create(name="product", site_id=SITE_PRODUCT, api_key=KEY_PRODUCT, rate_limit=100)
    for audience_id in AUDIENCES:
        subscriptions.subscribe(
            Audience.objects.create(audience_id=audience_id, name=f"Audience {audience_id}"), connection
        )
    _, token = tokens.create_token("bench")
    messages = [message(connection.connection_key, all_changes[i : i + 100]) for i in range(0, len(all_changes), 100)]
    url = f"http://127.0.0.1:{web_port}/api/mparticle/firehose"
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    queue = list(reversed(messages))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            response = session.post(url, data=json.dumps(body), headers=headers, timeout=30)
            if response.status_code not in (200, 202):
                failures.append(f"{response.status_code} {response.text[:200]}")

    started = time.monotonic()
    # Messages of one round must arrive in order for a profile: send round by round.
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"the Firehose endpoint refused messages: {failures[:3]}")
    harness.wait_for(lambda: _holds(port, SITE_PRODUCT, expected), 600, "the product's final state", interval=0.05)
    elapsed = time.monotonic() - started
    return elapsed, harness.standin(port, "stats")["workspaces"][SITE_PRODUCT]["requests"]


def run_official(port, all_changes, expected, rate: int) -> tuple[float, int]:
    from customerio import CustomerIO, CustomerIOException

    client = CustomerIO(SITE_OFFICIAL, KEY_OFFICIAL)
    client.base_url = f"http://127.0.0.1:{port}/api/v1"
    members: dict[str, set[int]] = defaultdict(set)
    interval, next_at = 1.0 / rate, time.monotonic()
    started = time.monotonic()
    for customer_id, audience_id, joins in all_changes:
        (members[customer_id].add if joins else members[customer_id].discard)(audience_id)
        value = ",".join(f"'{a}'" for a in sorted(members[customer_id]))
        while True:
            next_at = max(next_at + interval, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
            try:
                client.identify(id=customer_id, SegmentMembership=value)
                break
            except CustomerIOException as exc:
                if "429" not in str(exc):
                    raise
                time.sleep(1.0)  # the client does not retry 429 itself
    elapsed = time.monotonic() - started
    if not _holds(port, SITE_OFFICIAL, expected):
        raise SystemExit("the official client's loop did not reach the final state")
    return elapsed, harness.standin(port, "stats")["workspaces"][SITE_OFFICIAL]["requests"]


def _holds(port: int, site: str, expected: dict[str, dict[str, str]]) -> bool:
    people = harness.standin(port, f"people?site_id={site}")["people"]
    return all(people.get(c, {}).get("SegmentMembership") == v["SegmentMembership"] for c, v in expected.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100, help="requests per second per workspace (default 100)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent Firehose senders (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    args = parser.parse_args()

    port, web_port = harness.free_port(), harness.free_port()
    env = harness.bench_env("cioaudience_bench_official", port)
    harness.recreate_database(env)
    all_changes = changes()
    expected = final_state(all_changes)

    with harness.processes() as group:
        harness.start_standin(
            group,
            env,
            port,
            [f"{SITE_PRODUCT}:{KEY_PRODUCT}:us:{args.rate}", f"{SITE_OFFICIAL}:{KEY_OFFICIAL}:us:{args.rate}"],
            validate_share=0.2,
        )
        harness.start_workers(group, env, args.workers)
        harness.start_web(group, env, web_port)
        product_seconds, product_requests = run_product(env, port, web_port, all_changes, expected, args.clients)
        official_seconds, official_requests = run_official(port, all_changes, expected, args.rate)
        people = harness.standin(port, f"people?site_id={SITE_PRODUCT}")["people"]
        official = harness.standin(port, f"people?site_id={SITE_OFFICIAL}")["people"]
        identical = people == official

    n = len(all_changes)
    print(f"machine: {harness.machine()}")
    print(f"{n} membership changes, {PROFILES} profiles, {len(AUDIENCES)} audiences, stand-in limit {args.rate} req/s")
    print(f"{'':28}{'seconds':>10}{'requests':>10}{'updates/s':>12}")
    print(f"{'cioaudience (end to end)':28}{product_seconds:>10.2f}{product_requests:>10}{n / product_seconds:>12.0f}")
    print(f"{'official client loop':28}{official_seconds:>10.2f}{official_requests:>10}{n / official_seconds:>12.0f}")
    print(f"speed-up: {official_seconds / product_seconds:.1f}x (target >= 20x); identical final state: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
