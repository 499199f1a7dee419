"""Claims on the outbox, called directly on `Forward` rows (SPEC section 4: leases, no profile sent twice at once).

The rules a user relies on: only due rows start a claim, the oldest first; a claim takes every
waiting row of its profiles; no two live claims share a profile of one connection; a lease runs
`FORWARD_CLAIM_SECONDS` and a dead worker's rows are claimable once it has run out; only the claim
that holds a row may renew, delete or give it back; a row given back never displaces a newer
waiting row of the same profile and audience. The clock is frozen so that "due now" and "a lease
that ends now" can be tested at their exact edge.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Forward
from connections.services.forwarding import claims
from connections.services.outbox import queue as outbox
from tests.support.factories import AudienceFactory, ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def frozen(monkeypatch, settings):
    settings.FORWARD_CLAIM_SECONDS = 45
    monkeypatch.setattr(claims.timezone, "now", lambda: NOW)
    return NOW


@pytest.fixture
def connection():
    return ConnectionFactory()


def row(connection, profile, audience=None, *, due=0.0, token="", lease=None, attempts=0, reason="membership"):
    """A Forward row due `due` seconds from NOW, held by `token` until `lease` seconds from NOW."""
    return Forward.objects.create(
        connection=connection,
        profile=profile,
        audience=audience,
        reason=reason,
        due_at=NOW + timedelta(seconds=due),
        attempts=attempts,
        claim_token=token,
        claimed_until=None if lease is None else NOW + timedelta(seconds=lease),
    )


def profiles(rows):
    return {r.profile_id for r in rows}


def test_a_claim_takes_due_rows_only_and_a_row_due_this_instant_is_due(frozen, connection):
    due_now, later = ProfileFactory(), ProfileFactory()
    row(connection, due_now, due=0)
    row(connection, later, due=1)

    token, rows = claims.claim(connection.pk, 10)

    assert profiles(rows) == {due_now.pk}
    assert len(token) == 32 and Forward.objects.get(profile=later).claim_token == ""


def test_the_limit_counts_profiles_oldest_due_first_and_takes_all_their_rows(frozen, connection):
    oldest, middle, newest = ProfileFactory(), ProfileFactory(), ProfileFactory()
    first, second = AudienceFactory(), AudienceFactory()
    row(connection, newest, due=-1)
    row(connection, oldest, first, due=-30)
    row(connection, oldest, second, due=60)  # not due yet, but of a claimed profile: sent with it
    row(connection, middle, due=-20)

    _, rows = claims.claim(connection.pk, 2)

    assert profiles(rows) == {oldest.pk, middle.pk}
    assert len(rows) == 3


def test_the_claimed_rows_carry_what_the_plan_needs(frozen, connection):
    profile, audience = ProfileFactory(), AudienceFactory()
    forward = row(connection, profile, audience, attempts=3, reason="resync")

    token, rows = claims.claim(connection.pk, 10)

    assert rows == [claims.ClaimedRow(forward.pk, profile.pk, audience.pk, "resync", 3)]
    forward.refresh_from_db()
    assert forward.claim_token == token
    assert forward.claimed_until == NOW + timedelta(seconds=45), "a lease of FORWARD_CLAIM_SECONDS"


def test_nothing_due_claims_nothing(frozen, connection):
    row(connection, ProfileFactory(), due=5)
    token, rows = claims.claim(connection.pk, 10)
    assert rows == [] and token
    assert not Forward.objects.exclude(claim_token="").exists()


def test_a_claim_takes_only_its_own_connections_rows(frozen, connection):
    other = ConnectionFactory()
    profile = ProfileFactory()
    row(connection, profile)
    theirs = row(other, profile)

    _, rows = claims.claim(connection.pk, 10)

    assert len(rows) == 1
    theirs.refresh_from_db()
    assert theirs.claim_token == ""


def test_a_profile_held_by_a_live_claim_waits_until_that_claim_is_done(frozen, connection):
    held, free = ProfileFactory(), ProfileFactory()
    row(connection, held, AudienceFactory(), token="worker-a", lease=1)
    row(connection, held)  # a change that came in while worker a sends
    row(connection, free)

    _, rows = claims.claim(connection.pk, 10)

    assert profiles(rows) == {free.pk}


def test_a_lease_that_ends_now_is_a_dead_workers_and_its_rows_are_claimed_again(frozen, connection):
    profile = ProfileFactory()
    row(connection, profile, AudienceFactory(), token="dead-worker", lease=0)
    row(connection, profile)

    token, rows = claims.claim(connection.pk, 10)

    assert len(rows) == 2
    assert set(Forward.objects.values_list("claim_token", flat=True)) == {token}


def test_another_connections_claim_on_the_same_person_does_not_hold_this_one(frozen, connection):
    profile = ProfileFactory()
    row(ConnectionFactory(), profile, token="other-connection", lease=30)
    row(connection, profile)

    _, rows = claims.claim(connection.pk, 10)

    assert profiles(rows) == {profile.pk}


def test_a_contested_profile_is_given_back_due_at_once_and_the_others_kept(frozen, connection):
    contested, mine = ProfileFactory(), ProfileFactory()
    audience = AudienceFactory()
    ours = row(connection, contested, token="ours", lease=30, due=-5, attempts=2)
    row(connection, mine, token="ours", lease=30)
    row(connection, contested, audience, token="theirs", lease=30)

    claims.give_up_contested(connection.pk, "ours", NOW)

    assert profiles(Forward.objects.filter(claim_token="ours")) == {mine.pk}
    back = Forward.objects.get(profile=contested, audience=None)
    assert back.claim_token == "" and back.claimed_until is None
    assert back.due_at == ours.due_at and back.attempts == 2, "given back untouched"


def test_an_expired_or_other_connections_claim_contests_nothing(frozen, connection):
    profile = ProfileFactory()
    row(connection, profile, token="ours", lease=30)
    row(connection, profile, AudienceFactory(), token="expired", lease=0)
    row(ConnectionFactory(), profile, token="elsewhere", lease=30)

    claims.give_up_contested(connection.pk, "ours", NOW)

    assert Forward.objects.filter(claim_token="ours").count() == 1


def test_renew_extends_the_lease_of_rows_still_ours(frozen, connection):
    mine = row(connection, ProfileFactory(), token="t", lease=1)
    also = row(connection, ProfileFactory(), token="t", lease=1)

    assert claims.renew("t", [mine.pk, also.pk]) == {mine.pk, also.pk}
    mine.refresh_from_db()
    assert mine.claimed_until == NOW + timedelta(seconds=45)


def test_renew_leaves_a_lease_with_more_than_half_left_and_names_the_rows_still_ours(frozen, connection):
    # Just claimed (a v2 batch's only request): rewriting the lease would buy nothing.
    fresh = row(connection, ProfileFactory(), token="t", lease=23)
    taken = row(connection, ProfileFactory(), token="other", lease=40)

    assert claims.renew("t", [fresh.pk, taken.pk]) == {fresh.pk}
    fresh.refresh_from_db()
    assert fresh.claimed_until == NOW + timedelta(seconds=23)


def test_renew_extends_a_lease_just_under_half_left(frozen, connection):
    ending = row(connection, ProfileFactory(), token="t", lease=22)

    assert claims.renew("t", [ending.pk]) == {ending.pk}
    ending.refresh_from_db()
    assert ending.claimed_until == NOW + timedelta(seconds=45)


def test_renew_names_only_the_rows_no_other_worker_took_over(frozen, connection):
    mine = row(connection, ProfileFactory(), token="t", lease=1)
    taken = row(connection, ProfileFactory(), token="other", lease=10)  # ending soon too

    assert claims.renew("t", [mine.pk, taken.pk]) == {mine.pk}
    taken.refresh_from_db()
    assert taken.claimed_until == NOW + timedelta(seconds=10), "another claim's lease is left alone"


def test_only_the_claim_that_holds_rows_deletes_them(frozen, connection):
    mine = row(connection, ProfileFactory(), token="t", lease=10)
    theirs = row(connection, ProfileFactory(), token="other", lease=10)

    claims.delete("t", iter([mine.pk, theirs.pk]))

    assert list(Forward.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_requeue_gives_rows_back_with_a_new_due_time_and_attempt_count(frozen, connection):
    forward = row(connection, ProfileFactory(), token="t", lease=10, attempts=1, reason="identity")
    due = NOW + timedelta(minutes=3)

    claims.requeue("t", [forward.pk], due_at=due, attempts=2)

    back = Forward.objects.get()
    assert (back.claim_token, back.claimed_until, back.due_at, back.attempts) == ("", None, due, 2)
    assert (back.profile_id, back.reason, back.created_at) == (forward.profile_id, "identity", forward.created_at)


def test_requeue_without_a_due_time_or_attempts_keeps_them(frozen, connection):
    forward = row(connection, ProfileFactory(), token="t", lease=10, due=-7, attempts=4)

    claims.requeue("t", [forward.pk])

    back = Forward.objects.get()
    assert (back.claim_token, back.due_at, back.attempts) == ("", forward.due_at, 4)


def test_a_newer_waiting_row_wins_over_a_row_given_back(frozen, connection):
    profile, audience = ProfileFactory(), AudienceFactory()
    ours = row(connection, profile, audience, token="t", lease=10, reason="membership", attempts=3)
    waiting = row(connection, profile, audience, reason="rename", due=2)

    claims.requeue("t", [ours.pk], due_at=NOW + timedelta(minutes=1), attempts=4)

    assert list(Forward.objects.values_list("pk", "reason", "attempts")) == [(waiting.pk, "rename", 0)]


def test_rows_given_back_are_written_in_every_outbox_writers_key_order(frozen, connection):
    # Writers inserting the same keys in different orders deadlock (seen: a worker giving rows
    # back during an outage while a message queued the same people). Every writer inserts in
    # (connection, profile, audience or 0) order; the new rows' ids show the order of the INSERT.
    early, late = ProfileFactory(), ProfileFactory()
    first, second = AudienceFactory(), AudienceFactory()
    claimed = [
        row(connection, late, second, token="t", lease=10),
        row(connection, early, second, token="t", lease=10),
        row(connection, late, None, token="t", lease=10, reason="identity"),
        row(connection, early, first, token="t", lease=10),
    ]

    claims.requeue("t", [r.pk for r in reversed(claimed)])

    written = [(r.profile_id, r.audience_id or 0) for r in Forward.objects.order_by("pk")]
    assert written == sorted(written) and len(written) == 4


def test_keys_of_several_reasons_are_queued_in_one_key_order(frozen, connection):
    early, late = ProfileFactory(), ProfileFactory()
    audience = AudienceFactory()
    outbox.enqueue_by_reason(
        {"identity": {(connection.pk, late.pk, None)}, "membership": {(connection.pk, early.pk, audience.pk)}}
    )
    assert list(Forward.objects.order_by("pk").values_list("profile_id", "reason")) == [
        (early.pk, "membership"),
        (late.pk, "identity"),
    ]


def test_requeue_moves_only_this_claims_rows_and_nothing_for_no_rows(frozen, connection):
    theirs = row(connection, ProfileFactory(), token="other", lease=10)

    claims.requeue("t", [theirs.pk], attempts=9)
    claims.requeue("other", [])

    theirs.refresh_from_db()
    assert (theirs.claim_token, theirs.attempts) == ("other", 0)


def test_release_gives_back_every_row_of_the_claim_untouched(frozen, connection):
    first = row(connection, ProfileFactory(), token="t", lease=10, due=-3, attempts=1)
    row(connection, ProfileFactory(), AudienceFactory(), token="t", lease=10)
    other = row(connection, ProfileFactory(), token="other", lease=10)

    claims.release("t")

    assert Forward.objects.filter(claim_token="").count() == 2
    assert Forward.objects.get(claim_token="", profile=first.profile).due_at == first.due_at
    other.refresh_from_db()
    assert other.claim_token == "other"


def test_a_lease_ends_forward_claim_seconds_from_now_or_from_the_time_given(frozen, settings):
    settings.FORWARD_CLAIM_SECONDS = 300
    assert claims.lease_end() == NOW + timedelta(seconds=300)
    assert claims.lease_end(NOW - timedelta(seconds=10)) == NOW + timedelta(seconds=290)


def test_a_profile_held_elsewhere_does_not_use_up_the_claims_limit(frozen, connection):
    held, free = ProfileFactory(), ProfileFactory()
    row(connection, held, AudienceFactory(), token="worker-a", lease=30)
    row(connection, held, due=-60)  # due long ago, but its profile is in flight
    row(connection, free, due=-1)

    _, rows = claims.claim(connection.pk, 1)

    assert profiles(rows) == {free.pk}


def test_another_connections_due_rows_do_not_use_up_the_claims_limit(frozen, connection):
    theirs, mine = ProfileFactory(), ProfileFactory()
    row(ConnectionFactory(), theirs, due=-60)
    row(connection, mine, due=-1)

    _, rows = claims.claim(connection.pk, 1)

    assert profiles(rows) == {mine.pk}


def test_two_claims_racing_for_one_profile_never_both_keep_it(frozen, connection, monkeypatch):
    # The race: between this claim's read and its update, another claim took the profile's
    # other row. Simulated by handing one of the rows to that other claim just before the check.
    profile = ProfileFactory()
    row(connection, profile, AudienceFactory())
    row(connection, profile)
    check = claims.give_up_contested

    def raced(connection_id, token, now):
        taken = Forward.objects.filter(claim_token=token, audience=None)
        taken.update(claim_token="concurrent")
        check(connection_id, token, now)

    monkeypatch.setattr(claims, "give_up_contested", raced)
    _, rows = claims.claim(connection.pk, 10)

    assert rows == [], "this claim backed off"
    assert Forward.objects.filter(claim_token="").count() == 1
    assert Forward.objects.filter(claim_token="concurrent").count() == 1


def test_deleting_the_rows_sent_leaves_the_claims_other_rows(frozen, connection):
    sent = row(connection, ProfileFactory(), token="t", lease=10)
    later = row(connection, ProfileFactory(), token="t", lease=10)

    claims.delete("t", [sent.pk])

    assert list(Forward.objects.values_list("pk", flat=True)) == [later.pk]


def test_renew_extends_only_the_rows_about_to_be_sent(frozen, connection):
    # The rest of the claim keeps its lease: if the worker dies after this request, they are
    # free again when that lease ends, not a lease later.
    asked = row(connection, ProfileFactory(), token="t", lease=1)
    taken = row(connection, ProfileFactory(), token="other", lease=40)
    not_asked = row(connection, ProfileFactory(), token="t", lease=1)

    assert claims.renew("t", [asked.pk, taken.pk]) == {asked.pk}
    not_asked.refresh_from_db()
    assert not_asked.claimed_until == NOW + timedelta(seconds=1)
