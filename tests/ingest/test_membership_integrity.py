"""Memberships always point at a stored profile and audience, though the database no longer checks it.

Migration 0012 dropped the memberships' foreign key constraints (their checks were most of a
Firehose message's commit, issue 14). What keeps the rows sound instead are locks: a message (or
an import batch) holds the stored profiles and audiences it writes memberships for FOR KEY SHARE
until it commits, and an erasure or an audience delete locks its rows FOR UPDATE first. Each test
here stops one transaction half-way, starts the other, and checks who waited and what is left.
Without the locks each one leaves memberships of a profile or audience that no longer exists.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from connections.models import Audience, ErasureRecord, Membership, Profile
from connections.services.erasure import local as erasure
from connections.services.imports import pg_copy as import_copy
from connections.services.imports import reading as imports
from connections.services.ingest import membership_rows, subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory, SubscriptionFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="needs PostgreSQL (SQLite lets one writer at a time in: nothing interleaves)",
    ),
]

WAIT = 10  # seconds: far longer than any step here takes when it is not blocked


class Paused:
    """Stops a thread inside a function until released; says when it got there."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def wrap(self, function: Callable) -> Callable:  # type: ignore[type-arg]
        def paused(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = function(*args, **kwargs)
            self.reached.set()
            assert self.release.wait(WAIT), "never released"
            return result

        return paused


class Worker(threading.Thread):
    """Runs `target` in its own database connection; keeps what it raised."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.target()
        except BaseException as error:  # reported by the test's own thread
            self.error = error
        finally:
            connection.close()
            self.done.set()


@contextmanager
def started(target: Callable[[], object]) -> Iterator[Worker]:
    worker = Worker(target)
    worker.start()
    try:
        yield worker
    finally:
        worker.join(WAIT)
    assert worker.error is None, f"{worker.error!r}"


def orphans() -> list[tuple[int, int]]:
    return list(
        Membership.objects.exclude(profile_id__in=Profile.objects.values("pk"))
        .values_list("profile_id", "audience_id")
        .union(
            Membership.objects.exclude(audience_id__in=Audience.objects.values("pk")).values_list(
                "profile_id", "audience_id"
            )
        )
    )


def join(customer_id: str, audience_id: int) -> Callable[[], object]:
    return lambda: apply_changes([ProfileChange(ProfileInput(customer_id=customer_id), {audience_id: True})])


def erase(customer_id: str) -> Callable[[], object]:
    return lambda: erasure.erase(erasure.PersonQuery(customer_id=customer_id), source=ErasureRecord.Source.COMMAND)


@pytest.fixture
def person():
    """c1, a member of audience 1; audience 2 exists too. Both are forwarded to one connection."""
    first = SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    SubscriptionFactory(audience=AudienceFactory(audience_id=2), connection=first.connection)
    join("c1", 1)()
    return Profile.objects.get(customer_id="c1")


def test_an_erasure_waits_for_a_message_joining_the_person_and_takes_its_memberships_too(person, monkeypatch):
    message = Paused()
    monkeypatch.setattr(membership_rows, "record", message.wrap(membership_rows.record))

    with started(join("c1", 2)):
        assert message.reached.wait(WAIT)  # c1's new membership is written, not committed
        with started(erase("c1")) as erasing:
            assert not erasing.done.wait(1), "the erasure did not wait for the message"
            message.release.set()

    assert not Profile.objects.filter(customer_id="c1").exists()
    assert not Membership.objects.exists()
    assert orphans() == []


def test_a_message_waits_for_an_erasure_and_then_records_the_person_anew(person, monkeypatch):
    erasing = Paused()
    monkeypatch.setattr(erasure, "_queue_calls", erasing.wrap(erasure._queue_calls))

    with started(erase("c1")):
        assert erasing.reached.wait(WAIT)  # c1 is deleted, not committed
        with started(join("c1", 2)) as message:
            assert not message.done.wait(1), "the message did not wait for the erasure"
            erasing.release.set()

    again = Profile.objects.get(customer_id="c1")
    assert again.pk != person.pk  # erased, then created by the later message
    assert list(Membership.objects.values_list("profile_id", "audience__audience_id")) == [(again.pk, 2)]
    assert orphans() == []


def test_deleting_an_audience_waits_for_a_message_joining_it_and_takes_its_memberships_too(person, monkeypatch):
    message = Paused()
    monkeypatch.setattr(membership_rows, "record", message.wrap(membership_rows.record))
    audience = Audience.objects.get(audience_id=2)

    with started(join("c2", 2)):
        assert message.reached.wait(WAIT)
        with started(lambda: subscriptions.delete_audiences([audience.pk])) as deleting:
            assert not deleting.done.wait(1), "the delete did not wait for the message"
            message.release.set()

    assert not Audience.objects.filter(audience_id=2).exists()
    assert list(Membership.objects.values_list("profile__customer_id", "audience__audience_id")) == [("c1", 1)]
    assert orphans() == []


def test_an_erasure_waits_for_an_import_batch_joining_the_person(person, monkeypatch):
    batch = Paused()
    monkeypatch.setattr(import_copy.outbox, "wake_workers", batch.wrap(import_copy.outbox.wake_workers))
    audience = Audience.objects.get(audience_id=2)
    rows = [imports.Row(line=1, customer_id="c1", email=None, first_name=None, last_name=None, is_member=True)]

    with started(lambda: import_copy.apply_rows(rows, audience)):
        assert batch.reached.wait(WAIT)
        with started(erase("c1")) as erasing:
            assert not erasing.done.wait(1), "the erasure did not wait for the import batch"
            batch.release.set()

    assert not Profile.objects.exists() and not Membership.objects.exists()
    assert orphans() == []


def test_an_import_batch_refuses_an_audience_deleted_before_it(person):
    audience = Audience.objects.get(audience_id=2)
    subscriptions.delete_audiences([audience.pk])
    rows = [imports.Row(line=1, customer_id="c9", email=None, first_name=None, last_name=None, is_member=True)]

    with pytest.raises(Audience.DoesNotExist, match="audience 2 was deleted during the import"):
        import_copy.apply_rows(rows, audience)

    assert not Profile.objects.filter(customer_id="c9").exists()
    assert orphans() == []
