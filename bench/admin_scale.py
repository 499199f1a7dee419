"""Benchmark: the admin at scale. Server time of the pages people open on big tables.

Fills a PostgreSQL database with PROFILES profiles and DELIVERIES forwarding-log rows
(set-based SQL, a few minutes), then renders each page REPEAT times in-process through
Django's test client as a superuser, and prints the median and worst server time and the
number of SQL queries. Target: every page under 300 ms.

    .venv/bin/python bench/admin_scale.py [--profiles 1000000] [--deliveries 5000000] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness

PAGES = [
    ("log, unfiltered", "/admin/connections/delivery/"),
    ("log, by connection and status", "/admin/connections/delivery/?connection__id__exact=2&status__exact=failed"),
    ("log, by HTTP status", "/admin/connections/delivery/?http=429"),
    ("log, by date (past 7 days)", "/admin/connections/delivery/?created_at__gte={week_ago}"),
    ("log, search by customer id", "/admin/connections/delivery/?q=c424242"),
    ("log, search by customer id prefix", "/admin/connections/delivery/?q=c42424"),
    ("log, search by email", "/admin/connections/delivery/?q=P424242@example.com"),
    ("log, failed only (attempt links)", "/admin/connections/delivery/?status__exact=failed"),
    ("log, one delivery", "/admin/connections/delivery/{delivery}/change/"),
    ("profiles, unfiltered", "/admin/connections/profile/"),
    ("profiles, search by customer id", "/admin/connections/profile/?q=c424242"),
    ("profile, one", "/admin/connections/profile/{profile}/change/"),
    ("connections", "/admin/connections/connection/"),
    ("connection page (chart)", "/admin/connections/connection/2/change/"),
]


def populate(profiles: int, deliveries: int) -> None:
    from django.db import connection

    from connections.models import Audience, Connection

    for n in range(1, 4):
        Connection.objects.create(name=f"Workspace {n}", site_id=f"site{n}", api_key=f"bench-key-{n:04d}")
    Audience.objects.bulk_create([Audience(audience_id=1000 + n, name=f"Audience {n}") for n in range(8)])
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO connections_profile (customer_id, email, first_name, last_name, mpid, created_at, updated_at)
               SELECT 'c' || g, 'p' || g || '@example.com', 'First', 'Last', NULL, now(), now()
               FROM generate_series(1, %s) g""",
            [profiles],
        )
        cursor.execute(
            """INSERT INTO connections_membership (profile_id, audience_id, is_member, changed_at)
               SELECT p.id, a.id, (p.id %% 3) <> 0, now() FROM connections_profile p
               JOIN connections_audience a ON a.audience_id = 1000 + (p.id %% 8)""",
            [],
        )
        cursor.execute(
            """INSERT INTO connections_delivery (connection_id, profile_id, customer_id, status, reason, action,
                 transport, attributes, http_status, response, error, attempt, retry_at, duration_ms, request_id,
                 created_at, finished_at)
               SELECT 1 + (g %% 3), 1 + (g %% %s), 'c' || (1 + (g %% %s)),
                 CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 97 = 0 THEN 'skipped' ELSE 'succeeded' END,
                 'membership', 'identify', 'v2_batch', '{"SegmentMembership": "''1001'',''1003''"}'::jsonb,
                 CASE WHEN g %% 50 = 0 THEN 429 WHEN g %% 97 = 0 THEN NULL ELSE 200 END, '{}', '', 1, NULL, 12, NULL,
                 now() - make_interval(secs => (g::float8 / %s) * 30 * 86400),
                 now() - make_interval(secs => (g::float8 / %s) * 30 * 86400)
               FROM generate_series(1, %s) g""",
            [profiles, profiles, deliveries, deliveries, deliveries],
        )
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--deliveries", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse the populated database of an earlier run")
    args = parser.parse_args()

    env = harness.bench_env("cioaudience_bench_admin", harness.free_port(), DEBUG="0", SECRET_KEY="b" * 60,
                            ALLOWED_HOSTS="testserver", SECURE_SSL_REDIRECT="0")
    if not args.keep:
        harness.recreate_database(env)
    harness.setup_django(env)
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client
    from django.utils import timezone

    from connections.models import Delivery, Profile

    if not args.keep:
        started = time.monotonic()
        populate(args.profiles, args.deliveries)
        print(f"populated in {time.monotonic() - started:.0f} s")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="x" * 20)
    client = Client()
    client.force_login(user)
    values = {
        "week_ago": (timezone.now() - timezone.timedelta(days=7)).isoformat().replace("+", "%2B"),
        "delivery": Delivery.objects.order_by("-id").values_list("id", flat=True)[0],
        "profile": Profile.objects.filter(customer_id="c424242").values_list("id", flat=True)[0],
    }
    settings.DEBUG = True  # to count queries
    print(f"machine: {harness.machine()}")
    print(f"{Delivery.objects.count():,} deliveries, {Profile.objects.count():,} profiles (PostgreSQL)")
    print(f"{'page':36}{'median ms':>10}{'worst ms':>10}{'queries':>9}")
    worst_overall = 0.0
    for name, url in PAGES:
        url = url.format(**values)
        times = []
        for _ in range(args.repeat):
            reset_queries()
            t = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        queries = len(connection.queries)
        worst_overall = max(worst_overall, statistics.median(times))
        print(f"{name:36}{statistics.median(times):>10.0f}{max(times):>10.0f}{queries:>9}")
    print("PASS" if worst_overall < 300 else "FAIL", "(target: every page under 300 ms, median)")


if __name__ == "__main__":
    main()
