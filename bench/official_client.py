"""Benchmark: this product against two baselines built on the official `customerio` client (3.2.0).

The same 8,000 membership changes (2,000 profiles x 4 changes over 8 audiences; toggle off,
v2 batch) reach three workspaces of one stand-in, each limited to RATE requests per second
(429 + Retry-After above it, in any sliding second):

(a) this product, end to end: Firehose messages of 100 changes into gunicorn, Celery workers on
    Redis, PostgreSQL; timed from the first message to the moment the stand-in holds the final
    state of every profile (by the stand-in's clock when it applied the last request: polling
    only says that it does);
(b) the official client, one v1 `identify` per change (what a naive integration sends: the
    profile's SegmentMembership after that change), paced as fast as the limit allows (the same
    1.05 s window margin as the product's limiter) and, on a 429, waiting exactly what
    Retry-After asks, then retrying: no fixed sleeps;
(c) the official client's own batching: per message window (the same 100 changes as one
    Firehose message) one v2 `batch()` carrying each touched profile's latest state, i.e. the
    same final state per window as the product; paced and retried like (b).

The client builds only https:// URLs (NOTES.md): (b) and (c) reach the plain-HTTP stand-in
through a requests adapter mounted on the client's own session that rewrites the scheme and
keeps the client's retry policy; everything else (`identify`, `batch`, its session, its
errors) is the client's unmodified code. Retry-After is read by a response hook on that
session, since the client's exception does not carry the headers.

All three must end in the identical stand-in state. Prints seconds, requests and updates per
second, and the ratio of each baseline's time to the product's, side by side.

    .venv/bin/python bench/official_client.py [--rate 100] [--clients 4] [--workers 2] [--web-workers 2]
        [--product-only]

With --workers 0 no worker runs: it times the 80 Firehose answers alone, to show what forwarding
at the same time costs ingestion on the same cores.
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
from requests.adapters import HTTPAdapter

SITE_PRODUCT, KEY_PRODUCT = "bench-product", "bench-product-key-01"
SITE_OFFICIAL, KEY_OFFICIAL = "bench-official", "bench-official-key-01"
SITE_BATCH, KEY_BATCH = "bench-batch", "bench-batch-key-01"
WINDOW = 100  # changes per Firehose message, and per batch() of baseline (c)
# The product's limiter keeps every 1.05 s window under the rate (connections/customerio/ratelimit.py);
# the baselines pace with the same margin, so that neither side is favoured.
PACING_WINDOW_SECONDS = 1.05
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


def run_product(env, port, web_port, all_changes, expected, clients: int, *, forwarding: bool) -> tuple[float, int]:
    harness.setup_django(env)
    from connections.models import Audience, Connection
    from connections.services.ingest import subscriptions, tokens

    connection = Connection.objects.create(name="product", site_id=SITE_PRODUCT, api_key=KEY_PRODUCT, rate_limit=100)
    for audience_id in AUDIENCES:
        subscriptions.subscribe(
            Audience.objects.create(audience_id=audience_id, name=f"Audience {audience_id}"), connection
        )
    _, token = tokens.create_token("bench")
    messages = [message(connection.connection_key, all_changes[i : i + 100]) for i in range(0, len(all_changes), 100)]
    url = f"http://127.0.0.1:{web_port}/api/mparticle/firehose"
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    # Bodies are encoded before the clock starts: the load generator is not the product.
    queue = [json.dumps(body).encode() for body in reversed(messages)]
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            response = session.post(url, data=body, headers=headers, timeout=30)
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
    answered = time.monotonic() - started
    if not forwarding:
        print(f"cioaudience, no worker: {len(messages)} messages answered in {answered:.2f} s, {clients} client(s)")
        return answered, 0
    harness.wait_for(lambda: _holds(port, SITE_PRODUCT, expected), 600, "the product's final state", interval=0.05)
    sent = _sent(port, SITE_PRODUCT)
    # The end is the stand-in's own clock (this machine's monotonic clock) when it had applied the
    # last request, not when polling noticed: the baselines' time ends at their last answer too.
    elapsed = max(done for _, _, done in sent) - started
    print(
        f"cioaudience: {len(messages)} messages answered in {answered:.2f} s "
        f"({answered / len(messages) * 1000:.1f} ms each, {clients} client(s)); "
        f"the stand-in held the final state {elapsed - answered:.2f} s later"
    )
    print(
        f"cioaudience sent {sum(len(ids) for _, ids, _ in sent)} profile updates for {len(expected)} profiles"
        f" in {len(sent)} requests (people per request, and when it reached the stand-in after the last answer:"
        f" {', '.join(f'{len(ids)} at {at - started - answered:+.2f} s' for at, ids, _ in sent)})"
    )
    return elapsed, harness.standin(port, "stats")["workspaces"][SITE_PRODUCT]["requests"]


def _sent(port: int, site: str) -> list[tuple[float, list[str], float]]:
    """(stand-in clock on arrival, identifiers, stand-in clock once applied) of every request a
    workspace received, in order."""
    sent, since = [], 0
    while True:
        page = harness.standin(port, f"requests?site_id={site}&since={since}")
        sent += [(r["monotonic"], r["identifiers"], r["answered"]) for r in page["requests"]]
        if not page["requests"]:
            return sent
        since = page["next"]


class PlainHTTPAdapter(HTTPAdapter):
    """Sends the client's https:// requests to the plain-HTTP stand-in; nothing else changes."""

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        request.url = "http://" + request.url.removeprefix("https://")
        return super().send(request, **kwargs)


class Paced:
    """The official client, pointed at the stand-in, paced to the rate and retrying 429 as asked."""

    def __init__(self, site: str, key: str, port: int, rate: int) -> None:
        from customerio import CustomerIO

        # The client's own URL templates then give https://127.0.0.1:PORT/api/v1/... and /api/v2/batch.
        self.client = CustomerIO(site, key, host="127.0.0.1", port=port)
        session = self.client.http
        retries = session.get_adapter("https://").max_retries  # the client's policy: 500-504 retried
        session.mount(f"https://127.0.0.1:{port}/", PlainHTTPAdapter(max_retries=retries))
        session.hooks["response"].append(self._remember_retry_after)
        self.retry_after = 0.0
        self.interval = PACING_WINDOW_SECONDS / rate
        self.next_at = time.monotonic()
        self.rate_limited = 0

    def _remember_retry_after(self, response, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.retry_after = float(response.headers.get("Retry-After", 0)) if response.status_code == 429 else 0.0

    def send(self, call) -> None:  # type: ignore[no-untyped-def]
        from customerio import CustomerIOException

        while True:
            time.sleep(max(0.0, self.next_at - time.monotonic()))
            self.next_at = max(self.next_at + self.interval, time.monotonic())
            try:
                call(self.client)
                return
            except CustomerIOException:
                if not self.retry_after:
                    raise
                self.rate_limited += 1
                # Wait what Customer.io asks, then resume pacing from then.
                time.sleep(self.retry_after)
                self.next_at = time.monotonic()


def run_official(port, all_changes, expected, rate: int) -> tuple[float, int, int]:
    paced = Paced(SITE_OFFICIAL, KEY_OFFICIAL, port, rate)
    members: dict[str, set[int]] = defaultdict(set)
    started = time.monotonic()
    for customer_id, audience_id, joins in all_changes:
        (members[customer_id].add if joins else members[customer_id].discard)(audience_id)
        value = ",".join(f"'{a}'" for a in sorted(members[customer_id]))
        paced.send(lambda client, c=customer_id, v=value: client.identify(id=c, SegmentMembership=v))
    elapsed = time.monotonic() - started
    if not _holds(port, SITE_OFFICIAL, expected):
        raise SystemExit("the official client's loop did not reach the final state")
    return elapsed, harness.standin(port, "stats")["workspaces"][SITE_OFFICIAL]["requests"], paced.rate_limited


def run_official_batch(port, all_changes, expected, rate: int) -> tuple[float, int, int]:
    paced = Paced(SITE_BATCH, KEY_BATCH, port, rate)
    members: dict[str, set[int]] = defaultdict(set)
    started = time.monotonic()
    for start in range(0, len(all_changes), WINDOW):
        touched: dict[str, None] = {}
        for customer_id, audience_id, joins in all_changes[start : start + WINDOW]:
            (members[customer_id].add if joins else members[customer_id].discard)(audience_id)
            touched[customer_id] = None
        operations = [
            {
                "type": "person",
                "action": "identify",
                "identifiers": {"id": c},
                "attributes": {"SegmentMembership": ",".join(f"'{a}'" for a in sorted(members[c]))},
            }
            for c in touched
        ]
        paced.send(lambda client, ops=operations: client.batch(ops))
    elapsed = time.monotonic() - started
    if not _holds(port, SITE_BATCH, expected):
        raise SystemExit("the official client's batches did not reach the final state")
    return elapsed, harness.standin(port, "stats")["workspaces"][SITE_BATCH]["requests"], paced.rate_limited


def _holds(port: int, site: str, expected: dict[str, dict[str, str]]) -> bool:
    people = harness.standin(port, f"people?site_id={site}")["people"]
    return all(people.get(c, {}).get("SegmentMembership") == v["SegmentMembership"] for c, v in expected.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100, help="requests per second per workspace (default 100)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent Firehose senders (default 4)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Celery worker processes (default 2); 0: time the Firehose answers alone, nothing forwarded, no baselines",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=2,
        help="gunicorn workers (default 2, one per core here; the README's production line runs 4)",
    )
    parser.add_argument(
        "--product-only", action="store_true", help="time cioaudience alone, without the two baselines (quicker)"
    )
    args = parser.parse_args()

    port, web_port = harness.free_port(), harness.free_port()
    env = harness.deployed_env("cioaudience_bench_official", port, allowed_hosts="127.0.0.1")
    harness.recreate_database(env)
    all_changes = changes()
    expected = final_state(all_changes)
    workspaces = [(SITE_PRODUCT, KEY_PRODUCT), (SITE_OFFICIAL, KEY_OFFICIAL), (SITE_BATCH, KEY_BATCH)]

    with harness.processes() as group:
        harness.start_standin(
            group, env, port, [f"{site}:{key}:us:{args.rate}" for site, key in workspaces], validate_share=0.2
        )
        harness.start_workers(group, env, args.workers)
        harness.start_web(group, env, web_port, workers=args.web_workers)
        cpu_before = group.cpu_seconds()
        product_seconds, product_requests = run_product(
            env, port, web_port, all_changes, expected, args.clients, forwarding=args.workers > 0
        )
        cpu = {name: used - cpu_before.get(name, 0.0) for name, used in group.cpu_seconds().items()}
        print("CPU seconds while cioaudience ran: " + ", ".join(f"{n} {s:.2f}" for n, s in sorted(cpu.items())))
        if args.product_only or args.workers == 0:
            return
        loop_seconds, loop_requests, loop_429 = run_official(port, all_changes, expected, args.rate)
        batch_seconds, batch_requests, batch_429 = run_official_batch(port, all_changes, expected, args.rate)
        states = [harness.standin(port, f"people?site_id={site}")["people"] for site, _ in workspaces]
        identical = all(state == states[0] for state in states)

    n = len(all_changes)
    rows = [
        ("cioaudience (end to end)", product_seconds, product_requests, "-"),
        ("official client, identify loop", loop_seconds, loop_requests, loop_429),
        ("official client, batch()", batch_seconds, batch_requests, batch_429),
    ]
    print(f"machine: {harness.machine()}")
    print(f"{n} membership changes, {PROFILES} profiles, {len(AUDIENCES)} audiences, stand-in limit {args.rate} req/s")
    print(f"{'':32}{'seconds':>10}{'requests':>10}{'429s':>6}{'updates/s':>12}{'vs cioaudience':>16}")
    for name, seconds, requests_, limited in rows:
        ratio = f"{seconds / product_seconds:.2f}x"
        print(f"{name:32}{seconds:>10.2f}{requests_:>10}{limited!s:>6}{n / seconds:>12.0f}{ratio:>16}")
    print(
        f"identify loop / cioaudience: {loop_seconds / product_seconds:.1f}x; "
        f"cioaudience / batch(): {product_seconds / batch_seconds:.2f}x (goal <= 1.5x); "
        f"identical final state: {identical}"
    )
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
