"""FIREHOSE_APPLY=worker with several appliers: each ordering rule of `connections/firehose/shards.py`.

The rules are shown over real concurrency where the database allows it: two appliers in two
threads, each with its own PostgreSQL connection, applying one backlog at once (SQLite has one
writer, so those tests need PostgreSQL). The rest hold on both databases.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.db import connection as db

from connections.firehose import inbox, ingest, shards
from connections.models import ErasureRecord, FirehoseMessage, Forward, Membership, Profile, Subscription
from connections.services.erasure import local as erasure
from tests.support.erasure import CUSTOMER_ID, dsr_message
from tests.support.factories import AudienceFactory, SubscriptionFactory
from tests.support.firehose import audience, membership_request, user_profile

pytestmark = pytest.mark.django_db

POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="two appliers at once need PostgreSQL (SQLite: one writer)")


@pytest.fixture
def firehose_apply(settings) -> str:
    settings.FIREHOSE_APPLY = "worker"
    settings.FIREHOSE_APPLIERS = 2
    return "worker"


@pytest.fixture
def apply_stored():
    """The tests apply what was stored themselves, with the appliers they choose."""
    return lambda: None


def person(customer_id: str, first_name: str, audience_id: int = 1, action: str = "add") -> dict:
    attributes = [{"key": "$FirstName", "action": "upsert", "value": first_name}]
    profile = user_profile(customer_id, audiences=[audience(audience_id, action, user_attributes=attributes)])
    profile["mpid"] = f"mpid-{customer_id}"  # as mParticle sends: every profile has its mpid
    return profile


def two_appliers_at_once(batch_size: int = 3) -> set[int]:
    """Run two appliers on the backlog at once, each in its own thread and connection; the threads that applied."""
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            inbox.apply_pending(batch_size=batch_size)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert not FirehoseMessage.objects.filter(pending=True).exists()
    assert not FirehoseMessage.objects.exclude(body=None).exists()  # no personal data left in the queue
    return {thread.ident for thread in threads if thread.ident is not None}


@pytest.fixture
def applied(monkeypatch) -> list[tuple[str, str, str, int]]:
    """What the appliers did, in order: ("change", customer id, first name, thread) or ("barrier", type, "", thread)."""
    events: list = []
    lock = threading.Lock()
    apply_changes, apply = ingest.apply_changes, ingest.apply

    def recording_changes(changes, *args, **kwargs):
        time.sleep(0.01)  # long enough for the two appliers' batches to overlap
        result = apply_changes(changes, *args, **kwargs)
        with lock:
            thread = threading.get_ident()
            events.extend(("change", c.profile.customer_id, c.profile.first_name, thread) for c in changes)
        return result

    def recording_barrier(message, connection):
        apply(message, connection)
        with lock:
            events.append(("barrier", message.envelope.type, "", threading.get_ident()))

    monkeypatch.setattr(ingest, "apply_changes", recording_changes)
    monkeypatch.setattr(ingest, "apply", recording_barrier)
    return events


def post_backlog(post, messages: int, people: int, label: str = "m", who: str = "p") -> list[list[str]]:
    """`messages` messages of 4 profiles each from `people` people; returns each message's customer ids."""
    sent = []
    for n in range(messages):
        ids = [f"{who}{(n * 7 + k * 3) % people}" for k in range(4)]
        post(membership_request(*(person(i, f"{label}{n}") for i in dict.fromkeys(ids))))
        sent.append(list(dict.fromkeys(ids)))
    return sent


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_appliers_apply_each_persons_messages_in_the_order_they_were_answered(post, connection, applied):
    sent = post_backlog(post, messages=40, people=15)

    threads = two_appliers_at_once()

    # Each person's messages, applied once each, in the order they were posted.
    for n in range(15):
        expected = [f"m{m}" for m, ids in enumerate(sent) if f"p{n}" in ids]
        got = [name for kind, who, name, _ in applied if kind == "change" and who == f"p{n}"]
        assert got == expected, f"p{n}"
        assert Profile.objects.get(customer_id=f"p{n}").first_name == expected[-1]
    # And both appliers applied some of it: the people were shared out between them.
    assert {thread for *_, thread in applied} == threads


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_dsr_is_applied_after_every_earlier_message_and_before_every_later_one(post, connection, applied):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1), connection=connection)
    before = post_backlog(post, messages=12, people=10, label="before")
    post(membership_request(person(CUSTOMER_ID, "Grace", audience_id=2)))
    post(dsr_message(email=None))
    post(membership_request(person(CUSTOMER_ID, "Grace again", audience_id=3)))
    after = post_backlog(post, messages=12, people=10, label="after")

    two_appliers_at_once()

    erased_at = next(i for i, event in enumerate(applied) if event[:2] == ("barrier", "dsr_processing_request"))
    changes = [(i, name) for i, (kind, _, name, _) in enumerate(applied) if kind == "change"]
    assert all(i < erased_at for i, name in changes if name.startswith("before") or name == "Grace")
    assert all(i > erased_at for i, name in changes if name.startswith("after") or name == "Grace again")
    assert len(changes) == sum(map(len, before)) + sum(map(len, after)) + 2
    # What the person is now: only what came after the erasure.
    profile = Profile.objects.get(customer_id=CUSTOMER_ID)
    assert profile.first_name == "Grace again"
    assert list(Membership.objects.filter(profile=profile).values_list("audience__audience_id", flat=True)) == [3]
    assert ErasureRecord.objects.count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_subscription_request_is_applied_after_every_earlier_message_and_before_every_later_one(
    post, connection, applied, subscription_request
):
    AudienceFactory(audience_id=1)
    post(subscription_request(action="add", audience_id=1, audience_name="Audience 1"))
    joined = post_backlog(post, messages=10, people=20, label="joined")
    post(subscription_request(action="remove", audience_id=1, audience_name="Audience 1"))
    late = post_backlog(post, messages=10, people=20, label="late", who="q")

    two_appliers_at_once()

    barriers = [i for i, event in enumerate(applied) if event[0] == "barrier"]
    assert len(barriers) == 2
    changes = [(i, name) for i, (kind, _, name, _) in enumerate(applied) if kind == "change"]
    assert all(barriers[0] < i < barriers[1] for i, name in changes if name.startswith("joined"))
    assert all(i > barriers[1] for i, name in changes if name.startswith("late"))
    # Seen from outside: everyone's membership is stored, and nothing is queued for the people who
    # joined after the subscription was deactivated (those before were, and the deactivation
    # cancelled what was still queued for it).
    assert Subscription.objects.get().status == Subscription.Status.INACTIVE
    everyone = {i for ids in joined + late for i in ids}
    assert set(Membership.objects.values_list("profile__customer_id", flat=True)) == everyone
    assert not Forward.objects.filter(profile__customer_id__startswith="q").exists()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_erase_person_while_an_applier_runs_erases_what_every_earlier_message_stored(post, connection):
    sent = post_backlog(post, messages=30, people=40)
    post(membership_request(person(CUSTOMER_ID, "Grace", audience_id=2)))
    sent += post_backlog(post, messages=30, people=40, label="n")
    started = threading.Event()

    def worker() -> None:
        started.set()
        try:
            inbox.apply_pending(batch_size=2)
        finally:
            db.close()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    done = inbox.erase_in_order([erasure.PersonQuery(customer_id=CUSTOMER_ID)], source="command")
    thread.join(timeout=120)

    assert len(done.erased) == 1 and done.erased[0].plan.profile_ids  # the person was there to erase
    assert not Profile.objects.filter(customer_id=CUSTOMER_ID).exists()
    assert not Membership.objects.filter(audience__audience_id=2).exists()
    assert Profile.objects.count() == len({i for ids in sent for i in ids})  # everyone else's changes applied
    assert not FirehoseMessage.objects.filter(pending=True).exists()


def test_messages_applied_together_leave_what_applying_them_one_by_one_would(post, connection):
    """In one batch: a later message stamped earlier loses (out of order); of equal stamps the later wins."""
    now = int(time.time() * 1000)

    def stamped(action: str, customer_id: str, timestamp_ms: int) -> dict:
        message = membership_request(user_profile(customer_id, audiences=[audience(1, action)]))
        message["timestamp_ms"] = timestamp_ms
        return message

    post(stamped("add", "late", now))
    post(stamped("delete", "late", now - 5000))  # answered later, made earlier: it arrived late
    post(stamped("add", "tie", now))
    post(stamped("delete", "tie", now))  # the same time: the later one wins

    assert inbox.apply_pending() == (4, False)

    members = dict(Membership.objects.values_list("profile__customer_id", "is_member"))
    assert members == {"late": True, "tie": False}


@needs_postgres
def test_a_backlog_larger_than_a_batch_asks_for_a_second_applier(post, connection):
    for n in range(2 * inbox.BATCH_SIZE + 1):
        post(membership_request(person(f"c{n}", "Ada")))
    asked = []

    assert inbox.apply_pending(on_backlog=lambda: asked.append(True)) == (2 * inbox.BATCH_SIZE + 1, False)

    assert asked == [True]  # once, however long the backlog


def test_a_message_shared_between_shards_waits_until_every_shard_applied_it(post, connection):
    people = [f"someone-{n}" for n in range(40)]
    post(membership_request(*(person(p, "Ada") for p in people)))
    stored = FirehoseMessage.objects.get()
    own = {shards.shard_of(shards.person_key(person(p, "Ada"))) for p in people}
    assert len(own) > 1  # the test needs people in several shards

    first = min(own)
    done = inbox.slices.apply([inbox.slices.Stored(stored.pk, stored.message_id, stored.body, 0)], frozenset({first}))
    inbox._mark_applied(done)

    stored.refresh_from_db()
    assert stored.pending and stored.body is not None  # others' people still to apply
    in_first = [p for p in people if shards.shard_of(shards.person_key(person(p, "Ada"))) == first]
    assert sorted(Profile.objects.values_list("customer_id", flat=True)) == sorted(in_first)
    assert inbox.apply_pending() == (1, False)
    stored.refresh_from_db()
    assert not stored.pending and stored.body is None and stored.shards_done == shards.ALL
    assert Profile.objects.count() == 40
