"""Re-activating large audiences (issue 16 items 3 and 4): the outbox stays bounded, the answer stays fast.

    .venv/bin/python bench/reactivation.py [--members 1000000] [--bounded-members 100000]

1. A subscription of a `--members` audience re-activated through the Firehose endpoint
   (`audience_subscription_request` remove, then add): the answer time of the `add` (the
   backfill is recorded, not done, in the request) and of the `remove`.
2. Ten re-activations of a `--bounded-members` audience, each followed by the worker's backfill
   task run to the end: the outbox rows afterwards (one per member, however many re-activations).
Everything in this process on PostgreSQL; no Customer.io traffic is involved.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from harness import bench_env, free_port, machine, recreate_database, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--bounded-members", type=int, default=100_000)
    args = parser.parse_args()
    env = bench_env("cioaudience_bench_reactivation", free_port(), ALLOWED_HOSTS="testserver")
    recreate_database(env)
    setup_django(env)
    from django.db import connection as db
    from django.test import Client

    from connections.models import Audience, Connection, Forward, Subscription
    from connections.services.ingest import subscriptions, tokens
    from connections.tasks import backfill_audience

    print(f"machine: {machine()}")
    connection = Connection.objects.create(name="reactivation", site_id="s", api_key="k")
    big = Audience.objects.create(audience_id=1, name="Big")
    bounded = Audience.objects.create(audience_id=2, name="Bounded")
    with db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO connections_profile (customer_id, email, first_name, last_name, created_at, updated_at)"
            " SELECT 'p' || n, '', '', '', now(), now() FROM generate_series(1, %s) n",
            [args.members],
        )
        for audience, count in ((big, args.members), (bounded, args.bounded_members)):
            cursor.execute(
                "INSERT INTO connections_membership (profile_id, audience_id, is_member, changed_at)"
                " SELECT id, %s, true, now() FROM connections_profile ORDER BY id LIMIT %s",
                [audience.pk, count],
            )
        cursor.execute("ANALYZE")
    Subscription.objects.create(audience=big, connection=connection)
    _, token = tokens.create_token("bench")
    client = Client()

    def subscription_request(action: str) -> float:
        body = {
            "type": "audience_subscription_request", "id": str(uuid.uuid4()), "timestamp_ms": int(time.time() * 1000),
            "firehose_version": "2.1.0", "account": {"account_id": 1, "account_settings": {
                "connectionKey": connection.connection_key}},
            "audience_id": 1, "audience_name": "Big", "action": action,
        }
        started = time.perf_counter()
        response = client.post("/api/mparticle/firehose", json.dumps(body), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Token {token}")
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.content
        return elapsed * 1000

    timings = [(subscription_request("remove"), subscription_request("add")) for _ in range(3)]
    removes, adds = sorted(t[0] for t in timings), sorted(t[1] for t in timings)
    print(f"re-activating a {args.members:,}-member audience through the Firehose: answer {adds[1]:.1f} ms (median "
          f"of 3; remove {removes[1]:.1f} ms); outbox rows written in the request: {Forward.objects.count()}")

    Forward.objects.all().delete()
    sub, _ = subscriptions.subscribe(bounded, connection)
    started = time.perf_counter()
    for _ in range(10):
        backfill_audience(connection.pk, bounded.pk, "activation")
        subscriptions.deactivate(sub)
        subscriptions.activate(sub)
    backfill_audience(connection.pk, bounded.pk, "activation")
    print(f"10 re-activations of a {args.bounded_members:,}-member audience, each backfilled by the worker's task: "
          f"{Forward.objects.count():,} outbox rows ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
