"""GET /metrics: who may read it, and that its figures add up what every process wrote.

The text is read with prometheus_client's own parser, as Prometheus would.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from connections.models import Connection, Delivery, Forward, ImportRun, ResyncRun
from connections.services.connection import history as state_log
from connections.services.ingest import subscriptions, tokens
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.resync import runs as resync
from connections.services.visibility import tallies
from tests.support.admin import make_delivery, make_forward
from tests.support.factories import AudienceFactory, ConnectionFactory, ProfileFactory
from tests.support.firehose import TEST_CONNECTION_KEY, membership_request, user_profile
from tests.support.firehose import URL as FIREHOSE_URL
from tests.support.scrape import TOKEN, scrape, value
from tests.support.workers import purge_broker, running_workers, wait_until


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


# --- who may read it -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_does_not_exist_without_a_metrics_token(client, settings):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong-token", f"Token {TOKEN}", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer  "],
)
def test_it_refuses_a_request_without_the_right_bearer_token(client, metrics_on, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}

    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN.encode() not in response.content
    assert b"cioaudience_" not in response.content


@pytest.mark.django_db
def test_it_answers_the_bearer_token_in_prometheus_text_format(client, metrics_on):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_it_only_reads(client, metrics_on):
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# --- what it says ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_reports_each_connections_state_backlog_and_oldest_change(client, metrics_on):
    calm = ConnectionFactory(name="Calm")
    stuck = ConnectionFactory(name="Stuck", state=Connection.State.BACKING_OFF)
    profiles = ProfileFactory.create_batch(3)
    for profile in profiles:
        make_forward(stuck, profile)
    Forward.objects.filter(profile=profiles[0]).update(created_at=timezone.now() - timedelta(minutes=42))

    families = scrape(client)

    assert value(families, "cioaudience_connection_state", connection="Stuck", state="backing_off") == 1
    assert value(families, "cioaudience_connection_state", connection="Stuck", state="active") == 0
    assert value(families, "cioaudience_connection_state", connection="Calm", state="active") == 1
    assert value(families, "cioaudience_backlog_forwards", connection="Stuck") == 3
    assert value(families, "cioaudience_backlog_forwards", connection="Calm") == 0
    assert 42 * 60 <= value(families, "cioaudience_backlog_oldest_age_seconds", connection="Stuck") < 43 * 60
    assert value(families, "cioaudience_backlog_oldest_age_seconds", connection="Calm") == 0
    assert value(families, "cioaudience_connection_state", connection_id=str(calm.pk), state="active") == 1


@pytest.mark.django_db
def test_delivery_counters_stay_exact_as_the_tallies_advance_and_the_log_is_pruned(client, metrics_on):
    connection = ConnectionFactory(name="Main")
    old = timezone.now() - timedelta(hours=3)
    for status, n in (("succeeded", 5), ("failed", 2), ("skipped", 1)):
        for _ in range(n):
            make_delivery(connection, status=status, duration_ms=30, request_id=None)
    Delivery.objects.update(created_at=old)
    make_delivery(connection, status="pending", http_status=None, finished_at=None)

    before = scrape(client)
    tallies.advance()
    after_advance = scrape(client)
    Delivery.objects.filter(created_at__lte=old).delete()  # prune_deliveries, say
    after_prune = scrape(client)

    for families in (before, after_advance, after_prune):
        assert value(families, "cioaudience_deliveries_total", connection="Main", status="succeeded") == 5
        assert value(families, "cioaudience_deliveries_total", connection="Main", status="failed") == 2
        assert value(families, "cioaudience_deliveries_total", connection="Main", status="skipped") == 1
        assert value(families, "cioaudience_deliveries_total", connection="Main", status="retrying") == 0
        assert value(families, "cioaudience_deliveries_pending", connection="Main") == 1


@pytest.mark.django_db
def test_the_tallies_never_pass_a_row_still_pending(client, metrics_on):
    connection = ConnectionFactory(name="Main")
    stuck = make_delivery(connection, status="pending", http_status=None, finished_at=None)
    Delivery.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=1))
    later = make_delivery(connection, status="succeeded")
    Delivery.objects.filter(pk=later.pk).update(created_at=timezone.now() - timedelta(minutes=30))

    tallies.advance()
    Delivery.objects.filter(pk=stuck.pk).update(status="succeeded")  # its answer arrives
    families = scrape(client)

    assert value(families, "cioaudience_deliveries_total", connection="Main", status="succeeded") == 2
    assert value(families, "cioaudience_deliveries_pending", connection="Main") == 0


@pytest.mark.django_db
def test_request_latency_counts_each_request_once_however_many_profiles_it_carried(client, metrics_on):
    connection = ConnectionFactory(name="Main")
    batch = uuid.uuid4()
    for _ in range(50):
        make_delivery(connection, request_id=batch, duration_ms=40)  # one v2 request for 50 people
    make_delivery(connection, request_id=uuid.uuid4(), duration_ms=700)
    make_delivery(connection, request_id=uuid.uuid4(), duration_ms=12_000)
    Delivery.objects.update(created_at=timezone.now() - timedelta(hours=1))
    tallies.advance()
    make_delivery(connection, request_id=uuid.uuid4(), duration_ms=20)  # after the mark: counted live

    families = scrape(client)

    def bucket(le: str) -> float:
        return value(families, "cioaudience_request_duration_seconds_bucket", connection="Main", le=le)

    assert value(families, "cioaudience_request_duration_seconds_count", connection="Main") == 4
    assert value(families, "cioaudience_request_duration_seconds_sum", connection="Main") == pytest.approx(12.76)
    assert bucket("0.025") == 1 and bucket("0.05") == 2 and bucket("0.5") == 2 and bucket("1.0") == 3
    assert bucket("10.0") == 3 and bucket("+Inf") == 4


@pytest.mark.django_db
def test_breaker_state_changes_are_counted_by_the_state_entered(client, metrics_on):
    connection = ConnectionFactory(name="Flaky")
    state_log.record_state_change(connection.pk, "active", "backing_off", "5 failures in 60 s")
    state_log.record_state_change(connection.pk, "backing_off", "active", "probe succeeded")
    state_log.record_state_change(connection.pk, "active", "backing_off", "Customer.io answered 503")
    assert state_log.record_state_change(connection.pk, "active", "active") is None

    families = scrape(client)

    changes = "cioaudience_connection_state_changes_total"
    assert value(families, changes, connection="Flaky", to_state="backing_off") == 2
    assert value(families, changes, connection="Flaky", to_state="active") == 1
    assert value(families, changes, connection="Flaky", to_state="faulted") == 0


@pytest.mark.django_db
def test_recording_an_unknown_state_is_refused_and_writes_nothing():
    connection = ConnectionFactory()

    with pytest.raises(state_log.UnknownState, match="'broken' is not a connection state"):
        state_log.record_state_change(connection.pk, "active", "broken")

    assert not connection.state_changes.exists()


@pytest.mark.django_db
def test_firehose_requests_are_counted_by_type_and_outcome(client, metrics_on):
    _inbound, token = tokens.create_token("mParticle")
    ConnectionFactory(connection_key=TEST_CONNECTION_KEY)  # the connection the messages name
    good = membership_request(user_profile(customer_id="c1", audiences=[]))
    del good["user_profiles"]  # a verification request: authenticated, changes nothing

    def post(body, auth: str | None = f"Token {token}"):  # type: ignore[no-untyped-def]
        headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
        return client.post(FIREHOSE_URL, json.dumps(body), content_type="application/json", **headers)

    assert post(good).status_code == 200
    assert post(good | {"id": str(uuid.uuid4())}).status_code == 200
    assert post(good | {"id": str(uuid.uuid4())}, auth="Token nope").status_code == 401
    assert post({"type": "made_up_request", "id": "x"}).status_code == 400
    assert client.post(FIREHOSE_URL, "{not json", content_type="application/json").status_code == 400

    families = scrape(client)

    counter = "cioaudience_firehose_requests_total"
    membership = "audience_membership_change_request"
    assert value(families, counter, type=membership, outcome="accepted") == 2
    # Without a valid token only a small body is read (issue 16.1): this one is, so its type is known.
    assert value(families, counter, type=membership, outcome="unauthorized") == 1
    assert value(families, counter, type="unknown", outcome="invalid") == 2  # a made-up type is not a label


def _post_verifications(client, count: int) -> None:  # type: ignore[no-untyped-def]
    _inbound, token = tokens.create_token("mParticle")
    ConnectionFactory(connection_key=TEST_CONNECTION_KEY)
    good = membership_request(user_profile(customer_id="c1", audiences=[]))
    del good["user_profiles"]  # a verification request: authenticated, changes nothing
    for _ in range(count):
        response = client.post(
            FIREHOSE_URL,
            json.dumps(good | {"id": str(uuid.uuid4())}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token}",
        )
        assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_firehose_requests_counted_in_autocommit_add_up(client, metrics_on):
    # As deployed: each request's count is its own transaction (committed asynchronously on PostgreSQL).
    _post_verifications(client, 5)

    families = scrape(client)

    counter = "cioaudience_firehose_requests_total"
    assert value(families, counter, type="audience_membership_change_request", outcome="accepted") == 5


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_counts_asynchronous_commit_never_reaches_another_transaction(client):
    from django.db import connection as db
    from django.db import transaction

    from connections.services.visibility import firehose_counts

    def synchronous_commit() -> str:
        with db.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    _post_verifications(client, 2)
    assert synchronous_commit() == "on"  # the next message's transaction waits for the disk as before
    with transaction.atomic():
        # Called inside a transaction, the count must not make that transaction's commit asynchronous.
        firehose_counts.count_request("audience_membership_change_request", "accepted", frozenset())
        assert synchronous_commit() == "on"


@pytest.mark.django_db
def test_import_and_resync_progress(client, metrics_on, tmp_path):
    connection = ConnectionFactory(name="Main")
    audience = AudienceFactory(audience_id=77, name="Buyers")
    subscriptions.subscribe(audience, connection)
    apply_changes([ProfileChange(ProfileInput(customer_id=f"c{i}"), {77: True}) for i in range(3)])
    run = resync.queue_all(resync.scope_for(connection))
    running = ImportRun.objects.create(audience=audience, source="big.csv", lines_total=1000, lines_done=400)
    csv = tmp_path / "members.csv"
    csv.write_text("customer_id,email,first_name,last_name,action\nn1,,,,add\nn2,,,,add\n")
    call_command("import_memberships", str(csv), "--audience", "77", stdout=io.StringIO(), stderr=io.StringIO())

    families = scrape(client)

    assert run.status == ResyncRun.Status.DONE
    assert value(families, "cioaudience_resync_running", connection="Main") == 0
    assert value(families, "cioaudience_resync_profiles", connection="Main", stage="total") == 3
    assert value(families, "cioaudience_resync_profiles", connection="Main", stage="queued") == 3
    assert value(families, "cioaudience_imports_running") == 1  # the finished import no longer counts
    assert value(families, "cioaudience_import_lines", import_id=str(running.pk), stage="done") == 400
    assert value(families, "cioaudience_import_lines", import_id=str(running.pk), stage="total") == 1000
    finished = ImportRun.objects.exclude(pk=running.pk).get()
    assert (finished.status, finished.lines_total, finished.lines_done) == ("done", 2, 2)


# --- several processes writing ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.timeout(180)
def test_a_worker_process_and_this_one_write_and_the_scrape_adds_up_both(
    client, metrics_on, standin, workspace_connection
):
    """A real worker sends and logs deliveries (and advances the tallies); this process adds a breaker change."""
    from cioaudience.celery import app

    purge_broker()
    connection = workspace_connection("site-us", name="Live", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="New Users"), connection)
    state_log.record_state_change(connection.pk, "active", "backing_off", "test")

    with running_workers(standin.url):
        apply_changes([ProfileChange(ProfileInput(customer_id=f"w{i}"), {123: True}) for i in range(30)])
        wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 30, message="30 deliveries")
        middle = scrape(client)
        # Settle the rows, then let the worker process count them into the tallies.
        Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=10))
        app.send_task("connections.tasks.advance_delivery_tallies")
        wait_until(lambda: tallies.counted_until() and tallies.counted_until() > timezone.now() - timedelta(minutes=5),
                   message="the worker to advance the tallies")
        apply_changes([ProfileChange(ProfileInput(customer_id=f"x{i}"), {123: True}) for i in range(20)])
        wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 50, message="20 more")
    families = scrape(client)

    requests = len({r.request_id for r in Delivery.objects.all()})
    assert value(middle, "cioaudience_deliveries_total", connection="Live", status="succeeded") == 30
    assert value(families, "cioaudience_deliveries_total", connection="Live", status="succeeded") == 50
    assert value(families, "cioaudience_request_duration_seconds_count", connection="Live") == requests
    assert value(families, "cioaudience_backlog_forwards", connection="Live") == 0
    assert value(families, "cioaudience_connection_state_changes_total", connection="Live", to_state="backing_off") == 1
    assert len(standin.people("site-us")) == 50
