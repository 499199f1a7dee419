"""Payload planning (`payloads.plan`) called directly on claimed rows: what each profile is sent, or why not.

SPEC section 3 (coalescing, computed from the database at send time; only active subscriptions
of *this* connection are forwarded), section 11 (manual segments: only the audiences forwarded
are touched, the full state on an identity change) and the erasure rule (a suppressed identifier
is not forwarded again to that workspace). No HTTP: the plan is what the client is then given.
"""

import pytest

from connections.models import Subscription, SuppressedIdentifier
from connections.services.erasure.rules import ID, identifier_hash
from connections.services.erasure.suppression import SUPPRESSED_REASON
from connections.services.forwarding.payloads import NOT_SUBSCRIBED, PROFILE_GONE, ClaimedRow, plan
from tests.support.factories import (
    AudienceFactory,
    ConnectionFactory,
    MembershipFactory,
    ProfileFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db

_ids = iter(range(1, 10**6))


def rows_for(profile, *audiences, general=False, attempts=0):
    rows = [ClaimedRow(next(_ids), profile.pk, a.pk, "membership", attempts) for a in audiences]
    if general:
        rows.append(ClaimedRow(next(_ids), profile.pk, None, "identity", attempts))
    return rows


@pytest.fixture
def connection():
    return ConnectionFactory()


def subscribe(connection, audience_id, name=None, segment=None, **fields):
    audience = AudienceFactory(audience_id=audience_id, name=name or f"A{audience_id}")
    SubscriptionFactory(connection=connection, audience=audience, customerio_segment_id=segment, **fields)
    return audience


def test_a_profile_with_nothing_left_to_forward_is_cancelled_and_the_next_one_still_planned(connection):
    gone = AudienceFactory(audience_id=9)  # never subscribed here (or since deactivated)
    live = subscribe(connection, 1)
    cancelled, sent = ProfileFactory(), ProfileFactory(last_name="Hopper")
    MembershipFactory(profile=sent, audience=live)

    first, second = plan(connection, rows_for(cancelled, gone) + rows_for(sent, live))

    assert first.cancel == NOT_SUBSCRIBED and not first.sendable
    assert first.customer_id == cancelled.customer_id  # the log names who was not sent
    assert second.sendable and second.attributes["last_name"] == "Hopper"


def test_a_profile_deleted_after_its_rows_were_queued_is_planned_gone_naming_nobody(connection):
    live = subscribe(connection, 1)
    erased, sent = ProfileFactory(customer_id="erased-1"), ProfileFactory(last_name="Lovelace")
    MembershipFactory(profile=erased, audience=live)
    MembershipFactory(profile=sent, audience=live)
    rows = rows_for(erased, live) + rows_for(sent, live)
    erased.delete()

    first, second = plan(connection, rows)

    assert first.gone and first.cancel == PROFILE_GONE and not first.sendable
    assert first.customer_id == ""  # the plan names nobody who was erased
    assert second.sendable and second.attributes["last_name"] == "Lovelace"


def test_the_identify_carries_the_profiles_names_and_email(connection):
    audience = subscribe(connection, 1)
    profile = ProfileFactory(customer_id="c1", email="ada@example.com", first_name="Ada", last_name="Lovelace")
    MembershipFactory(profile=profile, audience=audience)

    (item,) = plan(connection, rows_for(profile, audience))

    assert item.attributes == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "SegmentMembership": "'1'",
    }
    assert item.customer_id == "c1" and item.identifier.value == "c1"


def test_a_suppressed_identifier_is_skipped_and_the_next_profile_still_planned(connection):
    audience = subscribe(connection, 1)
    erased, other = ProfileFactory(customer_id="erased-1"), ProfileFactory()
    SuppressedIdentifier.objects.create(connection=connection, identifier_hash=identifier_hash(ID, "erased-1"))

    first, second = plan(connection, rows_for(erased, audience) + rows_for(other, audience))

    assert first.skip == SUPPRESSED_REASON
    assert second.sendable


def test_a_suppression_in_another_workspace_does_not_hold_this_one(connection):
    audience = subscribe(connection, 1)
    profile = ProfileFactory(customer_id="erased-elsewhere")
    SuppressedIdentifier.objects.create(
        connection=ConnectionFactory(), identifier_hash=identifier_hash(ID, "erased-elsewhere")
    )

    (item,) = plan(connection, rows_for(profile, audience))

    assert item.sendable and item.skip == ""


def test_only_this_connections_subscriptions_reach_segment_membership(connection):
    mine = subscribe(connection, 1)
    theirs = AudienceFactory(audience_id=2)
    SubscriptionFactory(connection=ConnectionFactory(), audience=theirs)
    profile = ProfileFactory()
    MembershipFactory(profile=profile, audience=mine)
    MembershipFactory(profile=profile, audience=theirs)

    (item,) = plan(connection, rows_for(profile, mine, general=True))

    assert item.attributes["SegmentMembership"] == "'1'"


def test_an_identity_change_of_a_profile_without_any_membership_sends_it_in_no_audience(connection):
    subscribe(connection, 1)
    profile = ProfileFactory()

    (item,) = plan(connection, rows_for(profile, general=True))

    assert item.sendable and item.attributes["SegmentMembership"] == ""


def test_with_the_toggle_on_an_audience_never_joined_is_sent_as_not_a_member(connection):
    connection.one_attribute_per_audience = True
    audience = subscribe(connection, 1, name="VIP")
    profile = ProfileFactory()  # a forward for the audience, but no membership record (yet)

    (item,) = plan(connection, rows_for(profile, audience))

    assert item.attributes["In VIP"] == "false"


def test_a_membership_change_touches_only_that_audiences_segment(connection):
    changed = subscribe(connection, 1, segment=501)
    untouched = subscribe(connection, 2, segment=502)
    profile = ProfileFactory()
    MembershipFactory(profile=profile, audience=changed, is_member=False)
    MembershipFactory(profile=profile, audience=untouched, is_member=True)

    (item,) = plan(connection, rows_for(profile, changed))

    assert item.segment_operations == [(501, "remove")]


def test_an_identity_change_restates_every_segment(connection):
    left = subscribe(connection, 1, segment=501)
    joined = subscribe(connection, 2, segment=502)
    profile = ProfileFactory()
    MembershipFactory(profile=profile, audience=left, is_member=False)
    MembershipFactory(profile=profile, audience=joined, is_member=True)

    (item,) = plan(connection, rows_for(profile, left, general=True))

    assert item.segment_operations == [(501, "remove"), (502, "add")]


def test_an_inactive_subscription_is_neither_listed_nor_segmented(connection):
    live = subscribe(connection, 1, segment=501)
    paused = subscribe(connection, 2, segment=502, status=Subscription.Status.INACTIVE)
    profile = ProfileFactory()
    MembershipFactory(profile=profile, audience=live)
    MembershipFactory(profile=profile, audience=paused)

    (item,) = plan(connection, rows_for(profile, live, paused, general=True))

    assert item.attributes["SegmentMembership"] == "'1'"
    assert [op.segment_id for op in item.segment_operations] == [501]


def test_all_rows_of_a_profile_become_one_plan_at_its_next_attempt(connection):
    first, second = subscribe(connection, 1), subscribe(connection, 2)
    profile = ProfileFactory()
    rows = rows_for(profile, first, attempts=0) + rows_for(profile, second, attempts=3)

    (item,) = plan(connection, rows)

    assert item.row_ids == [r.id for r in rows]
    assert item.attempt == 4 and item.reason == "membership"


def test_no_rows_no_plan(connection):
    assert plan(connection, []) == []
