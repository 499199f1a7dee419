"""A large audience's activation on a v2 connection streams (issue 29, part 1).

Pages of members in keyset order go to Customer.io as v2 batches, with one batch-log row per
request and no outbox or log row per person; everything the per-person path guarantees holds:
suppressed and erased people are never sent, identify comes before the segment add, a transient
answer sends the page again later (never dropped), a restart resumes from the checkpoint, and a
change or an erasure that races a page is never overtaken by it. BACKFILL_INLINE_MAX is 3 and a
page is 2 people here, so that a few rows make several pages; the defaults are held by
tests/resync/test_backfill.py (1,000 inline) and bench/large_audience.py (1,000 per page).
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from cio_standin import Faults
from connections.models import BatchDelivery, Delivery, ErasureCall, Forward, Profile, ResyncRun, SuppressedIdentifier
from connections.services.erasure import local as erasure
from connections.services.erasure.rules import ID, identifier_hash
from connections.services.forwarding import claims
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import memberships, subscriptions
from connections.services.ingest.segments import set_segment_id
from connections.services.resync import backfill
from connections.tasks import backfill_audience
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory

pytestmark = pytest.mark.django_db
SITE = "site-us"


@pytest.fixture(autouse=True)
def small_pages(settings):
    settings.BACKFILL_INLINE_MAX = 3
    settings.FORWARD_BATCH_SIZE = 2


@pytest.fixture
def activation(standin, workspace_connection):
    """An audience of 5 members and 2 ex-members, subscribed on a v2 connection (toggle on)."""

    def make(*, segment: bool = False, **fields):
        audience = AudienceFactory(audience_id=77, name="Big")
        members = [MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n}")) for n in range(5)]
        for n in range(2):
            MembershipFactory(audience=audience, is_member=False, profile=ProfileFactory(customer_id=f"x{n}"))
        connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True, **fields)
        subscription, _ = subscriptions.subscribe(audience, connection)  # records the run (5 > 3)
        segment_id = None
        if segment:
            segment_id = standin.create_segment(SITE, "Big")
            set_segment_id(subscription, segment_id)
        return connection, audience, [m.profile for m in members], segment_id

    return make


def run_to_the_end(connection, audience, reason="activation"):
    turn = backfill.queue_for(connection.pk, audience.pk, reason, 60.0)
    assert turn.finished, turn
    return turn


def test_every_member_is_sent_in_batches_with_one_log_row_per_request(standin, activation):
    connection, audience, members, _ = activation()

    turn = run_to_the_end(connection, audience)

    people = standin.people(SITE)
    assert {cid: people[cid]["In Big"] for cid in people} == {f"m{n}": "true" for n in range(5)}
    batches = [r for r in standin.requests(SITE) if r.path == "/api/v2/batch"]
    assert sorted(len(r.body["batch"]) for r in batches) == [1, 2, 2]  # pages under way at once: any order
    rows = list(BatchDelivery.objects.order_by("id"))
    assert [(r.action, r.status, r.people, r.reason) for r in rows] == [
        ("identify", "succeeded", n, "activation") for n in (2, 2, 1)
    ]
    assert sorted(pid for r in rows for pid in r.profile_ids) == sorted(p.pk for p in members)
    assert not Forward.objects.exists() and not Delivery.objects.exists()  # nothing per person
    run = ResyncRun.objects.get()
    assert (run.status, run.total, run.queued, run.inflight_to) == ("done", 5, 5, None)
    assert turn.report.succeeded == 5 and turn.report.requests == 3


def test_the_body_logged_is_the_body_sent(standin, activation):
    connection, audience, _, _ = activation()
    run_to_the_end(connection, audience)

    def in_order(bodies):  # pages under way at once reach Customer.io in any order
        return sorted(bodies, key=lambda body: body["batch"][0]["identifiers"]["id"])

    sent = [r.body for r in standin.requests(SITE) if r.path == "/api/v2/batch"]
    logged = [json.loads(bytes(r.body)) for r in BatchDelivery.objects.all()]
    assert len(logged) == len(sent) == 3 and in_order(logged) == in_order(sent)


def test_identify_goes_before_the_segment_add_of_the_same_people(standin, activation):
    connection, audience, _, segment_id = activation(segment=True)

    run_to_the_end(connection, audience)

    assert standin.segment_members(SITE, segment_id) == {f"m{n}" for n in range(5)}
    # Each person's identify comes before the segment request naming them (pages go at once).
    for customer_id in (f"m{n}" for n in range(5)):
        naming = [r.path for r in standin.requests(SITE) if customer_id in r.identifiers]
        assert naming == ["/api/v2/batch", f"/api/v1/segments/{segment_id}/add_customers"], naming
    rows = BatchDelivery.objects.order_by("id").values_list("action", "segment_id", "status")
    assert sorted(set(rows)) == [("identify", None, "succeeded"), ("segment_add", segment_id, "succeeded")]


def test_suppressed_and_unidentifiable_people_are_not_sent_and_say_why(standin, activation):
    connection, audience, members, _ = activation()
    SuppressedIdentifier.objects.create(connection=connection, identifier_hash=identifier_hash(ID, "m1"))
    Profile.objects.filter(pk=members[3].pk).update(customer_id="")

    run_to_the_end(connection, audience)

    assert set(standin.people(SITE)) == {"m0", "m2", "m4"}
    skipped = Delivery.objects.filter(status="skipped")
    assert sorted(skipped.values_list("profile_id", flat=True)) == sorted([members[1].pk, members[3].pk])
    assert "suppressed" in skipped.get(profile=members[1]).error
    assert ResyncRun.objects.get().queued == 5  # settled, all of them


def test_a_429_sends_the_page_again_later_and_loses_nobody(standin, activation):
    connection, audience, _, _ = activation()
    standin.set_faults(Faults(share=1.0, statuses=(429,), retry_after=3, path_contains="/api/v2/batch"))

    turn = backfill.queue_for(connection.pk, audience.pk, "activation", 60.0)

    assert not turn.finished and turn.come_back_in >= 3 and turn.attempt == 2
    run = ResyncRun.objects.get()
    assert (run.last_profile_id, run.queued, run.inflight_to, run.claimed_until) == (0, 0, None, None)
    # The pages under way at once were all answered 429; none is settled.
    assert set(BatchDelivery.objects.values_list("status", flat=True)) == {"retrying"}
    standin.clear_faults()
    connection.refresh_from_db()
    connection.paused_until = None
    connection.save(update_fields=["paused_until"])

    turn = backfill.queue_for(connection.pk, audience.pk, "activation", 60.0, turn.attempt)

    assert turn.finished
    assert len(standin.people(SITE)) == 5
    retried = BatchDelivery.objects.filter(attempt=2)
    assert retried.count() == 3 and set(retried.values_list("status", flat=True)) == {"succeeded"}


def test_the_task_comes_back_after_the_backoff(standin, activation, monkeypatch):
    connection, audience, _, _ = activation()
    standin.set_faults(Faults(share=1.0, statuses=(503,), retry_after=None, path_contains="/api/v2/batch"))
    scheduled = []
    monkeypatch.setattr(
        backfill_audience, "apply_async", lambda args, countdown=None: scheduled.append((args, countdown))
    )

    backfill_audience(connection.pk, audience.pk, "activation")

    [(args, countdown)] = scheduled
    assert args[-2:] == (2, None) and countdown > 0  # the next attempt of the run (no lane), after a backoff


def test_a_paused_connection_sends_nothing_and_says_when_to_come_back(standin, activation):
    connection, audience, _, _ = activation()
    connection.paused_until = timezone.now() + timedelta(seconds=30)
    connection.save(update_fields=["paused_until"])

    turn = backfill.queue_for(connection.pk, audience.pk, "activation", 60.0)

    assert not turn.finished and 25 < turn.come_back_in <= 30
    assert standin.requests(SITE) == [] and not BatchDelivery.objects.exists()


def test_a_restart_resumes_after_the_checkpoint(standin, activation):
    connection, audience, members, _ = activation()
    ids = sorted(p.pk for p in members)
    ResyncRun.objects.update(last_profile_id=ids[1], queued=2)  # two were answered before the crash

    run_to_the_end(connection, audience)

    assert len(standin.people(SITE)) == 3
    assert ResyncRun.objects.get().queued == 5


def test_a_subscription_deactivated_between_pages_ends_the_run(standin, activation, monkeypatch, settings):
    settings.STREAM_PAGES_IN_FLIGHT = 1  # one page after another, so that "after the first" is one page
    connection, audience, _, _ = activation()
    from connections.services.resync import page_sending

    def deactivating_after_it(*args, **kwargs):
        result = yield from page_sending.page_program(*args, **kwargs)
        subscriptions.deactivate(connection.subscriptions.get())
        return result

    monkeypatch.setattr("connections.services.resync.streaming.page_program", deactivating_after_it)
    run_to_the_end(connection, audience)

    assert len(standin.people(SITE)) == 2  # the first page only
    assert ResyncRun.objects.get().status == "done"


# --- the ordering rules (connections/services/outbox/inflight.py) --------------------------------


def mark_in_flight(run, up_to, seconds=30):
    ResyncRun.objects.filter(pk=run.pk).update(
        inflight_to=up_to, claimed_until=timezone.now() + timedelta(seconds=seconds)
    )


def change(customer_id, member):
    person = memberships.ProfileInput(customer_id=customer_id)
    memberships.apply_changes([memberships.ProfileChange(profile=person, memberships={77: member})])


def test_a_change_to_a_person_in_flight_waits_for_the_page(activation):
    connection, _audience, members, _ = activation()
    ids = sorted(p.pk for p in members)
    run = ResyncRun.objects.get()
    change("m0", False)  # inside the page below
    change("m4", False)  # outside it
    mark_in_flight(run, ids[1])

    token, rows = claims.claim(connection.pk, 10)
    assert {r.profile_id for r in rows} == {ids[4]}
    claims.release(token)

    ResyncRun.objects.filter(pk=run.pk).update(inflight_to=None)  # the page was answered
    token, rows = claims.claim(connection.pk, 10)
    assert {r.profile_id for r in rows} == {ids[0], ids[4]}


def test_a_claim_taken_as_the_page_was_marked_gives_the_person_back(activation):
    connection, _audience, members, _ = activation()
    ids = sorted(p.pk for p in members)
    change("m0", False)
    token, rows = claims.claim(connection.pk, 10)  # committed just before the mark...
    assert [r.profile_id for r in rows] == [ids[0]]
    mark_in_flight(ResyncRun.objects.get(), ids[1])

    claims.give_up_contested(connection.pk, token, timezone.now())  # ...its check after commit sees it

    assert not Forward.objects.filter(claim_token=token).exists()
    assert Forward.objects.filter(profile_id=ids[0], claim_token="").exists()


def test_a_person_a_change_claim_holds_is_left_to_the_change_path(standin, activation):
    connection, audience, members, _ = activation()
    memberships.apply_changes(  # a change of name: the person's row is then claimed by a change worker
        [memberships.ProfileChange(profile=memberships.ProfileInput(customer_id="m0", first_name="Mo"), memberships={})]
    )
    token, rows = claims.claim(connection.pk, 10)
    assert [r.profile_id for r in rows] == [members[0].pk]

    run_to_the_end(connection, audience)

    assert "m0" not in standin.people(SITE)  # not in any page
    assert all(members[0].pk not in r.profile_ids for r in BatchDelivery.objects.all())
    assert Forward.objects.filter(profile=members[0], reason="activation", audience=audience, claim_token="").exists()
    claims.release(token)
    forward_pending(connection.pk)  # the change path sends them, with the activation's audience
    assert standin.people(SITE)["m0"]["In Big"] == "true"
    assert ResyncRun.objects.get().queued == 5


def test_an_erasure_of_a_person_in_flight_waits_for_the_page_lease(activation, settings):
    settings.CUSTOMERIO_TIMEOUT = 10.0
    connection, _audience, members, _ = activation()
    connection.erasure = "delete"
    connection.save(update_fields=["erasure"])
    run = ResyncRun.objects.get()
    mark_in_flight(run, sorted(p.pk for p in members)[1])
    lease = ResyncRun.objects.get().claimed_until

    erasure.erase(erasure.PersonQuery(customer_id="m0"), source="admin", requested_by="dpo")

    [call] = ErasureCall.objects.all()
    assert (call.due_at - lease).total_seconds() == pytest.approx(10.0)


def test_an_erasure_outside_the_page_is_not_held(activation):
    connection, _audience, members, _ = activation()
    connection.erasure = "delete"
    connection.save(update_fields=["erasure"])
    mark_in_flight(ResyncRun.objects.get(), sorted(p.pk for p in members)[1])

    erasure.erase(erasure.PersonQuery(customer_id="m4"), source="admin", requested_by="dpo")

    [call] = ErasureCall.objects.all()
    assert call.due_at == call.record.created_at


def test_a_person_erased_before_the_page_is_never_sent(standin, activation):
    connection, audience, _members, _ = activation()
    erasure.erase(erasure.PersonQuery(customer_id="m2"), source="admin", requested_by="dpo")

    run_to_the_end(connection, audience)

    assert set(standin.people(SITE)) == {"m0", "m1", "m3", "m4"}
    assert not any("m2" in bytes(r.body).decode() for r in BatchDelivery.objects.all())


def test_a_change_that_waited_for_a_page_is_woken_when_the_page_is_answered(standin, activation, monkeypatch):
    connection, audience, _members, _ = activation()
    change("m0", False)  # queued during the page below: its claim skips it until the page is answered
    woken = []
    monkeypatch.setattr(
        "connections.services.outbox.wakeup.send_task",
        lambda name, args, countdown=None: woken.append((name, args)) or True,
    )

    run_to_the_end(connection, audience)

    assert ("connections.tasks.forward_connection", [connection.pk]) in woken
    assert len(woken) == 1  # only the page holding m0 had a change waiting
