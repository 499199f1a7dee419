"""Fault injection with real workers: a misbehaving Customer.io, a killed worker, a database restart.

Marked `reliability`; they run in CI on PostgreSQL and Redis with real Celery workers.
"""

import os
import signal
import time
from collections import defaultdict

import pytest
from django.db import connection as db
from django.utils import timezone

from cio_standin import Faults
from connections.models import Delivery, Forward, Membership, Profile, Subscription
from connections.services.forwarding.attributes import segment_membership_value
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability, pytest.mark.timeout(600)]

AUDIENCES = [11, 22, 33, 44]


@pytest.fixture(params=["v2_batch", "v1"])
def connection(request, standin, workspace_connection):
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000, transport=request.param)
    for audience_id in AUDIENCES:
        subscriptions.subscribe(AudienceFactory(audience_id=audience_id, name=f"A{audience_id}"), connection)
    return connection


def expected_state(connection) -> dict[str, dict[str, str]]:
    active = set(
        Subscription.objects.filter(connection=connection, status="active").values_list(
            "audience__audience_id", flat=True
        )
    )
    members = defaultdict(list)
    for customer_id, audience_id in Membership.objects.filter(is_member=True).values_list(
        "profile__customer_id", "audience__audience_id"
    ):
        if audience_id in active:
            members[customer_id].append(audience_id)
    return {
        p.customer_id: {
            "first_name": p.first_name,
            "SegmentMembership": segment_membership_value(members[p.customer_id]),
        }
        for p in Profile.objects.all()
    }


def applied_versions(standin) -> dict[str, list[int]]:
    """The first_name version ("v3" -> 3) of every identify the stand-in applied, in arrival order."""
    versions = defaultdict(list)
    for request in sorted(standin.requests("site-us"), key=lambda r: r.index):
        if request.status != 200 or not isinstance(request.body, dict):
            continue
        if "batch" in request.body:
            for action in request.body["batch"]:
                versions[action["identifiers"]["id"]].append(int(action["attributes"]["first_name"][1:]))
        else:  # v1: the body is the attributes
            versions[request.identifiers[0]].append(int(request.body["first_name"][1:]))
    return versions


def maintenance_connection():
    import psycopg

    s = db.settings_dict
    return psycopg.connect(
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        user=s["USER"] or "postgres",
        dbname="postgres",
        autocommit=True,
    )


def drain(timeout=300):
    """Wait for the outbox to empty; the workers and beat (running the sweep) do the work."""
    deadline = time.monotonic() + timeout
    while Forward.objects.exists():
        assert time.monotonic() < deadline, f"{Forward.objects.count()} forwards still pending"
        time.sleep(0.5)


def test_under_30_percent_faults_every_profile_ends_in_the_database_state(connection, standin):
    standin.set_faults(
        Faults(share=0.15, statuses=(429, 500, 503), timeout_share=0.08, timeout_seconds=1.5, drop_share=0.07, seed=7)
    )
    profiles = [f"p{i}" for i in range(500)]
    with running_workers(standin.url, count=2, concurrency=4, beat=True, CUSTOMERIO_TIMEOUT="1"):
        for version in range(1, 5):  # 4 rounds x 500 profiles = 2,000 membership changes
            audience = AUDIENCES[version - 1]
            apply_changes(
                [
                    ProfileChange(
                        ProfileInput(customer_id=c, first_name=f"v{version}"),
                        {audience: True, AUDIENCES[version - 2]: (i % 2 == 0)} if version > 1 else {audience: True},
                    )
                    for i, c in enumerate(profiles)
                ]
            )
            time.sleep(1)
        drain()

    people = standin.people("site-us")
    expected = expected_state(connection)
    wrong = {c: (people.get(c), e) for c, e in expected.items() if {k: people.get(c, {}).get(k) for k in e} != e}
    if wrong:
        first = next(iter(wrong))
        log = list(
            Delivery.objects.filter(customer_id=first)
            .order_by("id")
            .values_list("status", "http_status", "attempt", "attributes", "error", "request_id")
        )
        sent = [(r.index, r.status, r.fault, r.body) for r in standin.requests("site-us") if first in r.identifiers]
        raise AssertionError(f"{len(wrong)} wrong, e.g. {first}: {wrong[first]}\nlog: {log}\nsent: {sent}")

    for customer_id, versions in applied_versions(standin).items():
        assert versions == sorted(versions), f"{customer_id} was sent older state after newer: {versions}"

    stats = standin.stats()
    faults = sum(stats["faults"].values())
    retried = Delivery.objects.filter(status="retrying", retry_at__isnull=False).count()
    assert faults > 0 and retried > 0, "faults and retries must be visible in the log"
    assert not Delivery.objects.filter(status="failed").exists(), "a transient failure was made final"
    print(f"\n{connection.transport}: faults injected {faults}, retried deliveries {retried}, losses 0")


def test_a_worker_killed_mid_batch_loses_nothing_and_resends_only_that_batch(connection, standin, settings):
    # With the default lease and sweep interval: the killed worker's rows are free after at most
    # FORWARD_CLAIM_SECONDS, and the next sweep (beat) hands them to the other worker.
    assert (settings.FORWARD_CLAIM_SECONDS, settings.SWEEP_INTERVAL_SECONDS) == (45, 30.0)
    profiles = [f"k{i}" for i in range(300)]
    apply_changes([ProfileChange(ProfileInput(customer_id=c, first_name="v1"), {11: True}) for c in profiles])
    standin.set_faults(Faults(delay_ms=3000, delay_share=1.0))  # every request is slow: kill one in flight

    with running_workers(standin.url, count=1, concurrency=1) as (worker,):
        wait_until(lambda: Delivery.objects.filter(status="pending").exists(), message="a request in flight")
        in_flight = set(Delivery.objects.filter(status="pending").values_list("customer_id", flat=True))
        os.killpg(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait()
    standin.clear_faults()

    with running_workers(standin.url, count=1, beat=True):
        drain()
    recovered_in = time.monotonic() - killed_at
    print(f"\n{connection.transport}: every profile of the killed worker delivered {recovered_in:.0f} s after SIGKILL")
    # Lease (45 s, renewed before a request once less than half is left) + one sweep interval (30 s) + sending.
    assert recovered_in < settings.FORWARD_CLAIM_SECONDS + settings.SWEEP_INTERVAL_SECONDS + 20

    sent = defaultdict(int)
    for request in standin.requests("site-us"):
        if request.status == 200:
            for identifier in request.identifiers:
                sent[identifier] += 1
    assert set(sent) == set(profiles), "every pending profile is delivered after the restart"
    twice = {c for c, n in sent.items() if n > 1}
    assert twice <= in_flight, f"only the in-flight batch may be sent twice: {sorted(twice - in_flight)[:5]}"
    assert (
        not Delivery.objects.filter(status="pending")
        .exclude(created_at__gte=timezone.now())
        .filter(customer_id__in=profiles, finished_at__isnull=True)
        .exclude(customer_id__in=in_flight)
        .exists()
    )


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_workers_recover_by_themselves_after_a_database_restart(connection, standin):
    name = db.settings_dict["NAME"]
    apply_changes([ProfileChange(ProfileInput(customer_id=f"d{i}", first_name="v1"), {11: True}) for i in range(200)])
    standin.set_faults(Faults(delay_ms=200, delay_share=1.0))

    with running_workers(standin.url, count=1, beat=True):
        wait_until(lambda: standin.requests("site-us"), message="forwarding to start")
        # What clients see of a restart: every connection dropped, new ones refused for a while.
        with maintenance_connection() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            time.sleep(3)
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        db.close()  # this test's own connection was dropped too
        standin.clear_faults()
        drain()

    assert set(standin.people("site-us")) == {f"d{i}" for i in range(200)}
