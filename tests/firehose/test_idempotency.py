"""A message is applied whole and once: a replayed id changes nothing and gets the same answer."""

import json
import threading

import pytest
from django.db import IntegrityError, connection
from django.test import Client

from connections.firehose import ingest
from connections.models import FirehoseMessage, Forward, Membership, Profile
from connections.services.ingest import memberships, tokens
from tests.support.factories import AudienceFactory, ConnectionFactory, SubscriptionFactory
from tests.support.firehose import TEST_CONNECTION_KEY, URL, audience, membership_request, row_counts, user_profile

pytestmark = pytest.mark.django_db


def a_change(message_id: str | None = None) -> dict:
    return membership_request(
        user_profile("c1", audiences=[audience(1, "add")]),
        user_profile("c2", audiences=[audience(1, "delete")]),
        message_id=message_id,
    )


def test_a_replayed_membership_message_returns_the_stored_response_and_changes_nothing(post):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    message = a_change()
    first = post(message)
    Forward.objects.all().delete()  # as a worker would, having sent them
    before = row_counts()

    again = post(message)

    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert row_counts() == before


def test_a_replay_changes_nothing_even_when_state_has_moved_on(post):
    message = a_change()
    post(message)
    post(membership_request(user_profile("c1", audiences=[audience(1, "delete")])))

    post(message)

    assert not Membership.objects.get(profile__customer_id="c1").is_member


def test_a_replayed_subscription_message_returns_the_stored_response(post, subscription_request):
    message = subscription_request(action="add", audience_subscription_settings={"Zebra": "1", "é": "2", "a": "3"})
    first = post(message)
    Profile.objects.create(customer_id="x")  # unrelated change in between
    before = row_counts()

    again = post(message)

    assert again.content == first.content
    assert row_counts() == before


def test_a_refused_message_is_not_remembered(post, subscription_request):
    message = subscription_request(action="add")
    message["account"]["account_settings"]["connectionKey"] = "unknown"
    assert post(message).status_code == 400

    assert FirehoseMessage.objects.count() == 0


def test_a_copy_arriving_after_the_first_is_recorded_is_not_applied_again(post, monkeypatch):
    """No lookup comes first (it would cost every message a round trip): the copy's record meets the
    first one's id, nothing of the copy is applied, and it answers with the first one's answer."""
    message = a_change()
    first = post(message)
    applied = []
    monkeypatch.setattr(ingest, "apply_membership_change", applied.append)
    before = row_counts()

    again = post(message)

    assert again.status_code == 200
    assert again.content == first.content
    assert applied == []
    assert row_counts() == before


def test_a_concurrent_profile_insert_is_retried_once(post, monkeypatch):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    calls = []

    def collide_once(changes, audience_names=None, source_time=None):
        calls.append(1)
        result = memberships.apply_changes(changes, audience_names, source_time)
        if len(calls) == 1:
            raise IntegrityError('duplicate key value violates unique constraint "profile_unique_customer_id"')
        return result

    monkeypatch.setattr(ingest, "apply_changes", collide_once)

    response = post(a_change())

    assert response.status_code == 200
    assert len(calls) == 2
    # The first attempt was rolled back whole: everything is there once.
    assert FirehoseMessage.objects.count() == 1
    assert Profile.objects.count() == 2
    assert Forward.objects.count() == 2  # c1 joined, c2 recorded as an ex-member


@pytest.mark.django_db(transaction=True)
def test_two_identical_messages_at_once_are_applied_once(apply_stored):
    _, token = tokens.create_token("mParticle")
    SubscriptionFactory(audience=AudienceFactory(audience_id=1), connection__connection_key=TEST_CONNECTION_KEY)
    body = json.dumps(a_change())
    barrier = threading.Barrier(2)
    answers = []

    def send():
        barrier.wait()
        try:
            response = Client().post(
                URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
            )
            answers.append((response.status_code, response.content))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    apply_stored()

    assert len(answers) == 2
    assert answers[0] == answers[1] and answers[0][0] == 200
    assert FirehoseMessage.objects.count() == 1
    assert Forward.objects.count() == 2  # c1 joined, c2 recorded as an ex-member
    assert Membership.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_messages_about_the_same_new_people_at_once_are_both_applied(apply_stored):
    _, token = tokens.create_token("mParticle")
    named = ConnectionFactory(connection_key=TEST_CONNECTION_KEY)  # the connection the messages name
    for audience_id in (1, 2):
        SubscriptionFactory(audience=AudienceFactory(audience_id=audience_id), connection=named)
    people = [f"c{n}" for n in range(50)]
    bodies = [
        json.dumps(
            membership_request(*(user_profile(c, mpid=f"m-{c}", audiences=[audience(a, "add")]) for c in people))
        )
        for a in (1, 2)
    ]
    barrier = threading.Barrier(2)
    answers = []

    def send(body: str) -> None:
        barrier.wait()
        try:
            response = Client().post(
                URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
            )
            answers.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    apply_stored()

    assert answers == [200, 200]
    assert Profile.objects.count() == len(people)  # each person created once, by one of the two
    assert Membership.objects.filter(is_member=True).count() == 2 * len(people)
    assert Forward.objects.count() == 2 * len(people)
