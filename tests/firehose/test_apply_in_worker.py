"""FIREHOSE_APPLY=worker: the request stores a checked message and answers; a worker applies it.

Every other test in tests/firehose runs in both modes (conftest). These are what only this mode
has: the answer before the changes, the order of application, erasures after what came before
them, and nothing lost when applying fails.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.db import connection as db
from django.utils import timezone

from connections import tasks
from connections.firehose import inbox, ingest
from connections.firehose.messages import parse_message
from connections.models import (
    Audience,
    Connection,
    ErasureRecord,
    FirehoseMessage,
    Forward,
    Membership,
    Profile,
    Subscription,
)
from connections.services.erasure import local as erasure
from connections.services.erasure import retention
from connections.services.outbox import wakeup
from tests.support.erasure import dsr_message, erase_in_admin
from tests.support.factories import AudienceFactory, ConnectionFactory, SubscriptionFactory
from tests.support.firehose import TEST_CONNECTION_KEY, audience, membership_request, row_counts, user_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def firehose_apply(settings) -> str:
    settings.FIREHOSE_APPLY = "worker"
    return "worker"


@pytest.fixture
def apply_stored():
    """Here the tests apply what was stored themselves, to look at it before."""
    return lambda: None


def named(customer_id: str, first_name: str, audience_id: int = 1, action: str = "add") -> dict:
    attributes = [{"key": "$FirstName", "action": "upsert", "value": first_name}]
    return user_profile(customer_id, audiences=[audience(audience_id, action, user_attributes=attributes)])


def test_the_answer_comes_first_and_a_worker_makes_the_changes(post, connection):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1), connection=connection)
    message = membership_request(named("c1", "Ada"), named("c2", "Grace"))
    before = row_counts()

    response = post(message)

    assert response.status_code == 200
    fresh = ("id", "timestamp_ms")  # each answer's own
    expected = ingest.answer_for(parse_message(message))
    assert {k: v for k, v in response.json().items() if k not in fresh} == {
        k: v for k, v in expected.items() if k not in fresh
    }
    stored = FirehoseMessage.objects.get()
    assert stored.pending and json.loads(stored.body) == message
    assert not Profile.objects.exists() and not Forward.objects.exists()
    assert row_counts() == {**before, "connections.FirehoseMessage": before["connections.FirehoseMessage"] + 1}

    assert inbox.apply_pending() == (1, False)

    assert dict(Profile.objects.values_list("customer_id", "first_name")) == {"c1": "Ada", "c2": "Grace"}
    assert Forward.objects.count() == 2
    stored.refresh_from_db()
    assert not stored.pending and stored.body is None  # no personal data left in the queue
    assert inbox.apply_pending() == (0, False)


def test_the_request_wakes_the_applier(post, monkeypatch, django_capture_on_commit_callbacks):
    published = []
    monkeypatch.setattr(wakeup, "send_task", lambda name, args, countdown=None: published.append(name) or True)

    with django_capture_on_commit_callbacks(execute=True):
        post(membership_request(named("c1", "Ada")))

    assert published == [wakeup.APPLY_TASK]


def test_a_message_for_an_unknown_connection_is_refused_and_nothing_is_stored(post):
    before = row_counts()

    response = post(membership_request(named("c1", "Ada"), connection_key="no-such-key"))

    assert response.status_code == 400
    assert "Connection Key" in response.json()["error"]
    assert row_counts() == before


def test_a_replay_before_the_worker_applied_the_first_copy_gets_its_answer_and_is_applied_once(post):
    message = membership_request(named("c1", "Ada"))

    first, again = post(message), post(message)

    assert again.status_code == 200 and again.content == first.content
    assert FirehoseMessage.objects.count() == 1
    assert inbox.apply_pending() == (1, False)
    assert Membership.objects.count() == 1


@pytest.mark.parametrize("batch_size", [1, inbox.BATCH_SIZE])
def test_messages_are_applied_in_the_order_they_were_answered(post, batch_size):
    names = ["Ada", "Grace", "Hedy", "Katherine", "Barbara"]
    for name in names:
        post(membership_request(named("c1", name)))
    post(membership_request(named("c2", "Joan")))

    assert inbox.apply_pending(batch_size=batch_size) == (6, False)

    assert dict(Profile.objects.values_list("customer_id", "first_name")) == {"c1": "Barbara", "c2": "Joan"}


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_apply_each_message_once_and_in_order(post, monkeypatch):
    for n in range(12):
        post(membership_request(named(f"c{n % 3}", f"name {n}")))
    applied, apply_changes = [], ingest.apply_changes

    def recording(changes, *args, **kwargs):
        applied.extend((c.profile.customer_id, c.profile.first_name) for c in changes)
        return apply_changes(changes, *args, **kwargs)

    monkeypatch.setattr(ingest, "apply_changes", recording)
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        try:
            inbox.apply_pending(batch_size=1)
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    for person in ("c0", "c1", "c2"):
        names = [name for customer_id, name in applied if customer_id == person]
        assert names == [f"name {n}" for n in range(12) if n % 3 == int(person[1])]
    assert not FirehoseMessage.objects.filter(pending=True).exists()
    assert Profile.objects.get(customer_id="c2").first_name == "name 11"


def test_an_erasure_message_erases_what_the_messages_before_it_stored(post, connection):
    post(membership_request(named("erase-me-4711", "Grace")))
    post(dsr_message(email=None))

    assert inbox.apply_pending() == (2, False)

    assert not Profile.objects.filter(customer_id="erase-me-4711").exists()
    assert not FirehoseMessage.objects.exclude(body=None).exists()


def test_erase_person_applies_the_waiting_messages_first(post, connection):
    post(membership_request(named("erase-me-4711", "Grace")))

    call_command("erase_person", "--customer-id", "erase-me-4711", stdout=io.StringIO())

    assert ErasureRecord.objects.count() == 1  # the person the waiting message names was found
    assert not FirehoseMessage.objects.filter(pending=True).exists()
    assert not FirehoseMessage.objects.filter(body__contains="erase-me-4711").exists()
    inbox.apply_pending()  # a worker, later
    assert not Profile.objects.exists()


def test_the_admins_erasure_applies_the_waiting_messages_first(post, connection, client, marketer):
    post(membership_request(named("erase-me-4711", "Grace")))
    inbox.apply_pending()
    post(membership_request(named("erase-me-4711", "Grace", audience_id=2)))  # waiting
    client.force_login(marketer)

    assert erase_in_admin(client, [Profile.objects.get().pk]).status_code == 302

    inbox.apply_pending()  # a worker, later: nothing is left to bring the person back
    assert not Profile.objects.exists() and not Membership.objects.exists()


def dsr_for_connection(**fields) -> dict:
    """A DSR that carries the account's settings, as one sent to a configured output does."""
    message = dsr_message(email=None, **fields)
    message["account"] = {"account_id": 1, "account_settings": {"connectionKey": TEST_CONNECTION_KEY}}
    return message


def test_a_dsr_whose_connection_was_deleted_after_it_was_accepted_still_erases_the_person(post, connection, caplog):
    post(membership_request(named("erase-me-4711", "Grace")))
    inbox.apply_pending()
    message = dsr_for_connection()
    assert post(message).status_code == 200  # accepted: mParticle takes it as done
    Connection.objects.all().delete()

    with caplog.at_level(logging.WARNING, logger="connections.firehose.inbox"):
        assert inbox.apply_pending() == (1, False)

    assert not Profile.objects.filter(customer_id="erase-me-4711").exists()
    record = ErasureRecord.objects.get()
    assert (record.source, record.request_id) == ("mparticle", message["subject_request_id"])
    assert f"Firehose message {message['id']}: its connection was deleted after it was accepted" in caplog.text
    assert not FirehoseMessage.objects.filter(pending=True).exists()


def test_a_membership_change_whose_connection_was_deleted_still_reaches_the_other_connections(post, connection):
    other = ConnectionFactory()
    SubscriptionFactory(audience=AudienceFactory(audience_id=1), connection=connection)
    SubscriptionFactory(audience=Audience.objects.get(audience_id=1), connection=other)
    message = membership_request(named("c1", "Ada"))
    post(message)
    connection.delete()

    assert inbox.apply_pending() == (1, False)

    assert Profile.objects.get().first_name == "Ada"
    assert Membership.objects.get().audience.audience_id == 1
    assert list(Forward.objects.values_list("connection_id", flat=True)) == [other.pk]


def test_a_subscription_whose_connection_was_deleted_still_renames_the_audience(post, connection, subscription_request):
    AudienceFactory(audience_id=9, name="Old name")
    post(subscription_request(action="update", audience_id=9, audience_name="New name"))
    connection.delete()

    assert inbox.apply_pending() == (1, False)

    assert Audience.objects.get(audience_id=9).name == "New name"
    assert not Subscription.objects.exists()


def waiting_backlog(post, customer_id: str, count: int) -> None:
    """`count` messages waiting for a worker, the last of them naming the person again."""
    for n in range(count - 1):
        post(membership_request(named(f"someone-{n}", "Ada")))
    post(membership_request(named(customer_id, "Grace", audience_id=2)))


def test_the_admins_erasure_past_its_wait_is_queued_behind_the_waiting_messages(
    post, connection, client, marketer, settings
):
    """ERASURE_WAIT_SECONDS shortened to 0; the default is exercised by the two tests above (a short backlog)."""
    settings.ERASURE_WAIT_SECONDS = 0
    post(membership_request(named("erase-me-4711", "Grace")))
    inbox.apply_pending()
    waiting_backlog(post, "erase-me-4711", 3 * inbox.BATCH_SIZE)
    client.force_login(marketer)

    response = erase_in_admin(client, [Profile.objects.get(customer_id="erase-me-4711").pk])

    page = client.get(response["Location"]).content.decode()
    assert "1 person will be erased by a worker right after the" in page
    assert not ErasureRecord.objects.exists()  # not yet: its turn has not come
    assert FirehoseMessage.objects.filter(pending=True).count() == 2 * inbox.BATCH_SIZE + 1  # one batch applied

    inbox.apply_pending()  # a worker, later: the waiting messages, then the erasure

    assert not Profile.objects.filter(customer_id="erase-me-4711").exists()
    assert not Membership.objects.filter(profile__customer_id="erase-me-4711").exists()
    assert Profile.objects.count() == 3 * inbox.BATCH_SIZE - 1  # everyone else's changes applied
    record = ErasureRecord.objects.get()
    assert (record.source, record.requested_by) == ("admin", marketer.username)
    assert not FirehoseMessage.objects.filter(body__contains="erase-me-4711").exists()


def test_erase_person_past_its_wait_is_queued_behind_the_waiting_messages(post, connection, settings):
    settings.ERASURE_WAIT_SECONDS = 0
    waiting_backlog(post, "erase-me-4711", 2 * inbox.BATCH_SIZE)
    out = io.StringIO()

    call_command("erase_person", "--customer-id", "erase-me-4711", stdout=out)

    request_id = FirehoseMessage.objects.get(message_type=FirehoseMessage.QUEUED_ERASURE).response["request_id"]
    assert f"the erasure is queued behind them as {request_id}" in out.getvalue()
    assert not ErasureRecord.objects.exists()
    inbox.apply_pending()
    assert ErasureRecord.objects.get().request_id == request_id
    assert not Profile.objects.filter(customer_id="erase-me-4711").exists()


def test_an_erasure_waits_in_the_request_no_longer_than_its_budget(post, connection, settings, monkeypatch):
    """A slow backlog: the erasure applies what its budget allows and queues itself, leaving the rest to a worker."""
    settings.ERASURE_WAIT_SECONDS = 0.2
    waiting_backlog(post, "erase-me-4711", 6 * inbox.BATCH_SIZE)
    apply_changes = ingest.apply_changes

    def slow(changes, *args, **kwargs):
        time.sleep(0.08)  # a batch's changes
        return apply_changes(changes, *args, **kwargs)

    monkeypatch.setattr(ingest, "apply_changes", slow)

    done = inbox.erase_in_order([erasure.PersonQuery(customer_id="erase-me-4711")], source="command")

    assert done.erased == [] and len(done.queued) == 1
    assert 0 < done.waiting_before < 6 * inbox.BATCH_SIZE  # stopped at the budget, the rest left waiting
    assert FirehoseMessage.objects.filter(pending=True).count() == done.waiting_before + 1


def test_a_batch_that_fails_stays_pending_and_is_applied_by_the_next_worker(post, monkeypatch):
    post(membership_request(named("c1", "Ada")))
    post(membership_request(named("c2", "Grace")))
    apply_changes = ingest.apply_changes

    def failing(changes, *args, **kwargs):
        apply_changes(changes, *args, **kwargs)
        raise OperationalError("the database went away")

    monkeypatch.setattr(ingest, "apply_changes", failing)
    with pytest.raises(OperationalError):
        inbox.apply_pending()

    # Rolled back whole, both messages' changes: both wait, with their bodies.
    assert not Profile.objects.exists()
    assert FirehoseMessage.objects.filter(pending=True, shards_done=0).exclude(body=None).count() == 2

    monkeypatch.setattr(ingest, "apply_changes", apply_changes)
    assert inbox.apply_pending() == (2, False)
    assert Profile.objects.count() == 2


def test_a_deadlock_is_run_again_at_once(post, monkeypatch):
    post(membership_request(named("c1", "Ada")))
    apply_changes = ingest.apply_changes
    failures = [True]

    class Deadlock(Exception):
        sqlstate = "40P01"

    def deadlocking_once(changes, *args, **kwargs):
        result = apply_changes(changes, *args, **kwargs)
        if failures:
            failures.pop()
            raise OperationalError("deadlock detected") from Deadlock()
        return result

    monkeypatch.setattr(ingest, "apply_changes", deadlocking_once)

    assert inbox.apply_pending() == (1, False)
    assert Profile.objects.get().first_name == "Ada"
    assert Membership.objects.count() == 1


def test_the_task_hands_what_its_time_budget_left_to_a_fresh_task(post, monkeypatch):
    for n in range(inbox.BATCH_SIZE + 2):
        post(membership_request(named(f"c{n}", "Ada")))
    again = []
    monkeypatch.setattr(tasks.apply_firehose_messages, "delay", lambda: again.append(True))
    monkeypatch.setattr(tasks, "TIME_BUDGET_SECONDS", 0.0)

    assert tasks.apply_firehose_messages() == inbox.BATCH_SIZE
    assert again == [True]
    assert tasks.apply_firehose_messages() == 2
    assert again == [True]
    assert Profile.objects.count() == inbox.BATCH_SIZE + 2


def test_the_task_with_its_default_budget_applies_everything_waiting(post, monkeypatch, settings):
    # One applier allowed: no second task is asked to help (test_parallel_applier.py has that).
    settings.FIREHOSE_APPLIERS = 1
    for n in range(2 * inbox.BATCH_SIZE + 1):
        post(membership_request(named(f"c{n}", "Ada")))
    again = []
    monkeypatch.setattr(tasks.apply_firehose_messages, "delay", lambda: again.append(True))

    assert tasks.apply_firehose_messages() == 2 * inbox.BATCH_SIZE + 1
    assert again == []


def test_the_sweep_wakes_the_applier_while_messages_wait(post, monkeypatch):
    woken = []
    monkeypatch.setattr(tasks.apply_firehose_messages, "delay", lambda: woken.append(True))
    tasks.sweep()
    assert woken == []

    post(membership_request(named("c1", "Ada")))
    tasks.sweep()

    assert woken == [True]


def test_pruning_keeps_a_message_that_waits_however_old(post):
    post(membership_request(named("c1", "Ada")))
    inbox.apply_pending()
    post(membership_request(named("c2", "Grace")))

    result = retention.prune_firehose_messages(timedelta(seconds=-1))

    assert result.deleted == 1
    assert list(FirehoseMessage.objects.values_list("pending", flat=True)) == [True]


def test_metrics_show_the_messages_waiting(post, settings, client):
    settings.METRICS_TOKEN = "metrics-secret"

    def scrape() -> str:
        return client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").content.decode()

    assert "cioaudience_firehose_pending_messages 0.0" in scrape()
    post(membership_request(named("c1", "Ada")))
    post(membership_request(named("c2", "Ada")))
    FirehoseMessage.objects.update(received_at=timezone.now() - timedelta(seconds=90))

    page = scrape()

    assert "cioaudience_firehose_pending_messages 2.0" in page
    age = float(page.split("\ncioaudience_firehose_pending_oldest_age_seconds ")[1].split()[0])
    assert 90 <= age < 120
