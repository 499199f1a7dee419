"""Benchmark: /metrics scrape time and the admin's overview pages at scale.

Fills PostgreSQL with PROFILES profiles (memberships spread over 8 audiences, plus one audience
holding every profile), DELIVERIES forwarding-log rows over 30 days and BACKLOG outbox rows, then
times in-process through Django's test client (median of REPEAT): the /metrics scrape before the
running totals have counted the log (every row read live) and after (`tallies.advance()`, timed
too), the admin home, the audience list and the page of the 1M-member audience.

    .venv/bin/python bench/visibility.py [--profiles 1000000] [--deliveries 5000000] [--backlog 100000] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness
from admin_scale import populate


def add_big_audience_and_backlog(backlog: int) -> None:
    from django.db import connection

    from connections.models import Audience, Connection, Subscription

    big = Audience.objects.create(audience_id=9999, name="Everyone")
    for c in Connection.objects.all():
        Subscription.objects.create(audience=big, connection=c)
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO connections_membership (profile_id, audience_id, is_member, changed_at)
               SELECT p.id, %s, (p.id %% 10) <> 0, now() FROM connections_profile p""",
            [big.pk],
        )
        cursor.execute(
            """INSERT INTO connections_forward (connection_id, profile_id, audience_id, reason, created_at, due_at,
                 attempts, claim_token)
               SELECT 1 + (p.id %% 3), p.id, NULL, 'resync', now() - make_interval(secs => p.id %% 600), now(), 0, ''
               FROM connections_profile p WHERE p.id <= %s""",
            [backlog],
        )
        cursor.execute("UPDATE connections_delivery SET request_id = md5(id::text)::uuid WHERE id %% 50 = 0", [])
        cursor.execute("ANALYZE", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--deliveries", type=int, default=5_000_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse the populated database of an earlier run")
    args = parser.parse_args()

    env = harness.bench_env(
        "cio_visibility_bench", harness.free_port(), DEBUG="0", SECRET_KEY="b" * 60, ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="0", METRICS_TOKEN="bench-token",
    )
    if not args.keep:
        harness.recreate_database(env)
    harness.setup_django(env)
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client

    from connections.models import Audience, Delivery, Forward, Membership, Profile, TallyMark
    from connections.services.visibility import tallies

    if not args.keep:
        started = time.monotonic()
        populate(args.profiles, args.deliveries)
        add_big_audience_and_backlog(args.backlog)
        print(f"populated in {time.monotonic() - started:.0f} s")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="x" * 20)
    client = Client()
    client.force_login(user)
    big = Audience.objects.get(audience_id=9999)
    from django.conf import settings

    settings.DEBUG = True  # to count queries
    print(f"machine: {harness.machine()}")
    print(
        f"{Delivery.objects.count():,} deliveries, {Profile.objects.count():,} profiles, "
        f"{Membership.objects.filter(audience=big).count():,} members of one audience, "
        f"{Forward.objects.count():,} outbox rows (PostgreSQL)"
    )

    medians: dict[str, float] = {}

    def measure(name: str, url: str, **headers: str) -> float:
        times = []
        for _ in range(args.repeat):
            reset_queries()
            t = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        median = medians[name] = statistics.median(times)
        print(f"{name:44}{median:>10.0f}{max(times):>10.0f}{len(connection.queries):>9}")
        return median

    auth = {"HTTP_AUTHORIZATION": "Bearer bench-token"}
    print(f"{'page':44}{'median ms':>10}{'worst ms':>10}{'queries':>9}")
    TallyMark.objects.all().delete()
    from connections.models import DeliveryTally

    DeliveryTally.objects.all().delete()
    measure("/metrics, nothing tallied (all rows live)", "/metrics", **auth)
    t = time.perf_counter()
    tallies.advance()
    print(f"{'tallies.advance() over the whole log':44}{(time.perf_counter() - t) * 1000:>10.0f}")
    scrape = measure("/metrics, tallies caught up", "/metrics", **auth)
    home = measure("admin home (overview)", "/admin/")
    measure("audience list", "/admin/connections/audience/")
    measure(f"audience page, {big.memberships.count():,} members", f"/admin/connections/audience/{big.pk}/change/")
    pages = [m for name, m in medians.items() if not name.startswith("/metrics")]
    ok = scrape < 200 and home < 300 and max(pages) < 300
    print("PASS" if ok else "FAIL", "(targets: /metrics, tallies caught up, under 200 ms; each page under 300 ms)")


if __name__ == "__main__":
    main()
