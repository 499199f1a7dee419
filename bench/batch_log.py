"""Benchmark: the batch log at 50,000,000 person-sends (issue 29, part 2).

Fills a PostgreSQL database (cio_b_bench unless BENCH_DATABASE_URL) with PROFILES profiles and
ROWS batch requests of PEOPLE people each (set-based INSERT ... SELECT generate_series, in chunks):
each body is a realistic v2 identify batch of those people, built in SQL, spread over the past 60
days (three or four monthly partitions). Each person is in ROWS * PEOPLE / PROFILES requests, as
after that many activations and resyncs of the whole audience. Then it measures, in-process
through Django's test client as a superuser (DEBUG off):

- a person's batch lookup (`batch_entries_for_profile`, one page) and their whole profile page,
  median and p95 of REPEAT requests (goal: under 300 ms);
- the batch requests' list, filtered and not, and one request's page;
- bytes per person-send: the partitions' pg_total_relation_size (heap, TOAST, every index) / the
  person-sends; and the body's lz4 size against pglz's on a sample;
- last, erasing the person (their place taken out of each request that names them).

With --screenshots DIR it serves the admin on 127.0.0.1 and takes Chromium screenshots (1366x800)
of the profile page's history and of the list. --drop drops the database at the end (disk).

    BENCH_BROKER_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/batch_log.py \\
        [--rows 50000] [--people 1000] [--profiles 1000000] [--keep] [--screenshots docs/images/batch_log] [--drop]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import harness

DAYS = 60
CHUNK = 1000  # batch rows per INSERT statement


def populate(rows: int, people: int, profiles: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from connections.models import Audience, Connection, Subscription
    from connections.services.erasure import partitions

    for n in range(1, 4):
        Connection.objects.create(
            name=f"Workspace {n}", site_id=f"site{n}", api_key=f"bench-key-{n:04d}", transport="v2_batch"
        )
    audience = Audience.objects.create(audience_id=1001, name="Loyal buyers")
    Subscription.objects.create(audience=audience, connection_id=1, status=Subscription.Status.ACTIVE)
    now = timezone.now()
    partitions.ensure_month_partitions(now=now - timedelta(days=DAYS), months_ahead=3)
    with connection.cursor() as cursor:
        started = time.monotonic()
        cursor.execute(
            """INSERT INTO connections_profile (customer_id, email, first_name, last_name, mpid, created_at, updated_at)
               SELECT 'c' || g, 'p' || g || '@example.com', 'First', 'Last', NULL, now(), now()
               FROM generate_series(1, %s) g""",
            [profiles],
        )
        cursor.execute(
            """INSERT INTO connections_membership (profile_id, audience_id, is_member, changed_at)
               SELECT p.id, %s, true, now() FROM connections_profile p""",
            [audience.pk],
        )
        print(f"  {profiles:,} profiles and memberships in {time.monotonic() - started:.0f} s", flush=True)
        blocks = profiles // people
        for first in range(0, rows, CHUNK):
            started = time.monotonic()
            # Row g names the people of block g % blocks, in id order; its body is their identify
            # actions as the client builds them. Round r = g / blocks (one pass over the audience):
            # activation then resyncs; 1 round in 5 a 207 rejecting the 242nd person of each request,
            # 1 in 7 a 503 (will retry).
            cursor.execute(
                """INSERT INTO connections_batchdelivery (connection_id, run_id, reason, action, segment_id,
                     transport, attempt, status, people, profile_ids, body, item_errors, http_status, response,
                     error, duration_ms, created_at, finished_at)
                   SELECT 1, NULL, CASE WHEN r = 0 THEN 'activation' ELSE 'resync' END, 'identify', NULL,
                     'v2_batch', 1,
                     CASE WHEN r %% 7 = 3 THEN 'retrying' WHEN r %% 5 = 1 THEN 'partial' ELSE 'succeeded' END,
                     %(people)s,
                     ARRAY(SELECT generate_series(b * %(people)s + 1, b * %(people)s + %(people)s))::bigint[],
                     convert_to('{"batch":[' || (
                       SELECT string_agg('{"type":"person","action":"identify","identifiers":{"id":"c' || p
                         || '"},"attributes":{"email":"p' || p || '@example.com","first_name":"First",'
                         || '"last_name":"Last","SegmentMembership":"''1001''","in_loyal_buyers":"true"}}', ',')
                       FROM generate_series(b * %(people)s + 1, b * %(people)s + %(people)s) p) || ']}', 'UTF8'),
                     CASE WHEN r %% 7 <> 3 AND r %% 5 = 1
                          THEN '{"241": "attributes.email: is not a valid email address"}'::jsonb
                          ELSE '{}'::jsonb END,
                     CASE WHEN r %% 7 = 3 THEN 503 WHEN r %% 5 = 1 THEN 207 ELSE 200 END,
                     CASE WHEN r %% 7 = 3 THEN 'Service Unavailable'
                          WHEN r %% 5 = 1 THEN '{"errors":[{"batch_index":241,"reason":"invalid",'
                                            || '"field":"attributes.email","message":"is not a valid email address"}]}'
                          ELSE '' END,
                     CASE WHEN r %% 7 = 3 THEN 'Customer.io answered 503. Will retry.' ELSE '' END,
                     120,
                     %(now)s - make_interval(secs => ((%(rows)s - g)::float8 / %(rows)s) * %(days)s * 86400),
                     %(now)s - make_interval(secs => ((%(rows)s - g)::float8 / %(rows)s) * %(days)s * 86400 - 0.12)
                   FROM generate_series(%(first)s, %(last)s) g,
                     LATERAL (SELECT g %% %(blocks)s AS b, g / %(blocks)s AS r) position""",
                {
                    "people": people,
                    "rows": rows,
                    "days": DAYS,
                    "now": now,
                    "first": first,
                    "last": min(first + CHUNK, rows) - 1,
                    "blocks": blocks,
                },
            )
            done = min(first + CHUNK, rows)
            print(f"  {done:,} / {rows:,} batch rows ({time.monotonic() - started:.1f} s this chunk)", flush=True)
        cursor.execute("VACUUM ANALYZE")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)]


def sizes() -> dict[str, int]:
    """Bytes of the batch log's partitions: heap, TOAST (with its index), each index by its parent's name."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT coalesce(sum(pg_relation_size(c.oid)), 0),
                      coalesce(sum(pg_total_relation_size(c.reltoastrelid)) FILTER (WHERE c.reltoastrelid <> 0), 0),
                      coalesce(sum(pg_total_relation_size(c.oid)), 0)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'connections_batchdelivery'::regclass"""
        )
        heap, toast, total = cursor.fetchone()
        cursor.execute(
            """SELECT parent.relname, sum(pg_relation_size(child.oid))
               FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
               JOIN pg_class child ON child.oid = i.inhrelid
               WHERE parent.relkind = 'I' AND parent.relname LIKE 'batchdelivery%%'
                  OR parent.relname = 'connections_batchdelivery_pkey'
               GROUP BY parent.relname ORDER BY 1"""
        )
        indexes = {name: int(size) for name, size in cursor.fetchall()}
    return {"heap": int(heap), "toast": int(toast), "total": int(total), **indexes}


def compression_sample() -> dict[str, float]:
    """Average stored bytes of 200 rows' body and profile_ids: as stored (lz4), recompressed with pglz, raw."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT avg(octet_length(body)), avg(pg_column_size(body)), avg(pg_column_size(profile_ids)),"
            " min(pg_column_compression(body)) FROM"
            " (SELECT body, profile_ids FROM connections_batchdelivery ORDER BY id LIMIT 200) s"
        )
        raw, stored, ids, method = cursor.fetchone()
        cursor.execute("CREATE TEMPORARY TABLE pglz_sample (body bytea COMPRESSION pglz)")
        # `|| ''`: a new value, so PostgreSQL compresses it again (a copied datum keeps its compression).
        cursor.execute(
            "INSERT INTO pglz_sample SELECT body || ''::bytea FROM connections_batchdelivery ORDER BY id LIMIT 200"
        )
        cursor.execute("SELECT avg(pg_column_size(body)), min(pg_column_compression(body)) FROM pglz_sample")
        pglz, pglz_method = cursor.fetchone()
        cursor.execute("DROP TABLE pglz_sample")
    assert pglz_method == "pglz", pglz_method
    return {"raw": float(raw), "stored": float(stored), "method": method, "pglz": float(pglz), "ids": float(ids)}


def lookup_plan(profile_id: int) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH naming AS MATERIALIZED (SELECT id, created_at"
            " FROM connections_batchdelivery WHERE profile_ids @> ARRAY[%s]::bigint[])"
            " SELECT id, created_at FROM naming ORDER BY created_at DESC, id DESC LIMIT 11",
            [profile_id],
        )
        return "\n".join(f"    {line}" for (line,) in cursor.fetchall())


def serve() -> tuple[str, Callable[[], None]]:
    """The admin over HTTP on 127.0.0.1 in a thread, for the screenshots (whitenoise serves the static files)."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


def screenshots(directory: str, session: str, pages: list[tuple[str, str]]) -> None:
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    base, stop = serve()
    Path(directory).mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            context = browser.new_context(viewport={"width": 1366, "height": 800})
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            for name, path in pages:
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                if name == "profile_history":  # the person's own items, as a reader would open them
                    rows = page.locator(".cio-history tbody tr")
                    rows.first.locator("summary").first.click()
                    rejected = rows.filter(has_text="Failed").first
                    if rejected.count():
                        rejected.locator("summary").first.click()
                    page.locator("#cio-history").scroll_into_view_if_needed()
                    page.evaluate("document.getElementById('cio-history').scrollIntoView()")
                if name == "batch_request":  # the answer and the start of the body
                    page.locator("fieldset", has_text="Answer").first.scroll_into_view_if_needed()
                    page.evaluate("document.querySelectorAll('fieldset')[1].scrollIntoView()")
                target = f"{directory}/{name}.png"
                page.screenshot(path=target)
                print(f"  screenshot {target}")
            browser.close()
    finally:
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--people", type=int, default=1_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="reuse the populated database of an earlier run")
    parser.add_argument("--screenshots", metavar="DIR", help="take Chromium screenshots of the pages into DIR")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args()

    env = harness.bench_env(
        "cio_b_bench", harness.free_port(), DEBUG="0", SECRET_KEY="b" * 60,
        ALLOWED_HOSTS="testserver,127.0.0.1", SECURE_SSL_REDIRECT="0",
    )
    if not args.keep:
        harness.recreate_database(env)
    # DEBUG off: the pages' static files come from the manifest.
    collect = [harness.PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(collect, cwd=harness.ROOT, env=env, check=True)
    harness.setup_django(env)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from connections.models import BatchDelivery, Profile
    from connections.services.forwarding.batch_log import batch_entries_for_profile

    if not args.keep:
        started = time.monotonic()
        populate(args.rows, args.people, args.profiles)
        print(f"populated in {time.monotonic() - started:.0f} s")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="x" * 20)
    client = Client()
    client.force_login(user)
    person = Profile.objects.get(customer_id="c424242")
    theirs = BatchDelivery.objects.filter(profile_ids__has=person.pk).order_by("-created_at")
    # A partly rejected one when there is one (its page shows the rejected items).
    request = theirs.filter(status=BatchDelivery.Status.PARTIAL).values_list("pk", flat=True).first()
    request = request or theirs.values_list("pk", flat=True)[0]
    sends = BatchDelivery.objects.count() * args.people
    in_rows = BatchDelivery.objects.filter(profile_ids__has=person.pk).count()
    print(f"machine: {harness.machine()}")
    print(f"{sends:,} person-sends in {sends // args.people:,} batch requests; c424242 is in {in_rows} of them")
    print("the lookup's plan:\n" + lookup_plan(person.pk))

    def lookup(per_page: int) -> Callable[[], None]:
        def run() -> None:
            entries = batch_entries_for_profile(person.pk, per_page=per_page).entries
            assert len(entries) == min(per_page, in_rows), len(entries)
            assert entries[0].item["identifiers"] == {"id": "c424242"}, entries[:1]

        return run

    pages = [
        ("profile page (whole request)", f"/admin/connections/profile/{person.pk}/change/"),
        ("profile page, history page 2", f"/admin/connections/profile/{person.pk}/change/?history=2"),
        ("batch requests, unfiltered", "/admin/connections/batchdelivery/"),
        ("batch requests, partly rejected", "/admin/connections/batchdelivery/?status__exact=partial"),
        ("batch requests, by connection+reason", "/admin/connections/batchdelivery/?connection__id__exact=1"
         "&reason__exact=resync"),
        ("batch requests, past 7 days", "/admin/connections/batchdelivery/?created_at__gte={week}"),
        ("one batch request", f"/admin/connections/batchdelivery/{request}/change/"),
    ]
    from django.utils import timezone

    week = (timezone.now() - timedelta(days=7)).isoformat().replace("+", "%2B")
    print(f"{'measure':42}{'median ms':>10}{'p95 ms':>9}{'queries':>9}")
    for per_page in (10, 50):
        median, p95 = timed(lookup(per_page), args.repeat)
        print(f"{f'batch lookup, {per_page} entries with their items':42}{median:>10.1f}{p95:>9.1f}{'2':>9}")
    worst = 0.0
    for name, url in pages:
        url = url.format(week=week)

        def get(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        median, p95 = timed(get, args.repeat)
        with CaptureQueriesContext(connection) as captured:
            get()
        worst = max(worst, median)
        print(f"{name:42}{median:>10.1f}{p95:>9.1f}{len(captured):>9}")
    print("PASS" if worst < 300 else "FAIL", "(goal: every page's median under 300 ms)")

    measured = sizes()
    total = measured["total"]
    print(f"batch log on disk: {total / 2**20:,.0f} MiB = {total / sends:.1f} bytes per person-send")
    for name, size in measured.items():
        if name != "total":
            print(f"  {name:40}{size / 2**20:>10,.1f} MiB{size / sends:>8.2f} B/person-send")
    sample = compression_sample()
    raw, stored, pglz = sample["raw"], sample["stored"], sample["pglz"]
    print(
        f"body, 200-row sample: raw {raw:,.0f} B, stored ({sample['method']}) {stored:,.0f} B ({raw / stored:.1f}x),"
        f" pglz {pglz:,.0f} B ({raw / pglz:.1f}x); profile_ids stored {sample['ids']:,.0f} B"
    )

    if args.screenshots:
        screenshots(
            args.screenshots,
            client.cookies["sessionid"].value,
            [
                ("profile_history", f"/admin/connections/profile/{person.pk}/change/#cio-history"),
                ("batch_requests", "/admin/connections/batchdelivery/"),
                ("batch_request", f"/admin/connections/batchdelivery/{request}/change/"),
            ],
        )
    # Last, as it changes the data: erasing the person rewrites the requests that name them (GIN).
    from connections.services.erasure import local as erasure

    started = time.perf_counter()
    erasure.erase(erasure.PersonQuery(customer_id="c424242"), source="command", requested_by="bench")
    took = (time.perf_counter() - started) * 1000
    left = BatchDelivery.objects.filter(profile_ids__has=person.pk).count()
    print(f"erasing c424242 (in {in_rows} requests): {took:.0f} ms; requests still naming them: {left}")

    if args.drop:
        connection.close()
        name = env["DATABASE_URL"].rsplit("/", 1)[1]
        admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)
        print(f"dropped {name}")


if __name__ == "__main__":
    main()
