import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Delivery, Forward, Membership, Profile, Subscription
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import (
    ProfileChange,
    ProfileInput,
    apply_changes,
    connections_forwarding_profiles,
    update_profile_identity,
)
from tests.support.factories import (
    AudienceFactory,
    ConnectionFactory,
    MembershipFactory,
    ProfileFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db


def forwards():
    return sorted((f.connection_id, f.profile.customer_id, f.audience_id, f.reason) for f in Forward.objects.all())


def test_a_join_is_stored_and_queued_for_every_active_subscription():
    audience = AudienceFactory(audience_id=123)
    active = SubscriptionFactory(audience=audience)
    SubscriptionFactory(audience=audience, status=Subscription.Status.INACTIVE)

    result = apply_changes([ProfileChange(ProfileInput(customer_id="c1", email="c1@example.com"), {123: True})])

    profile = Profile.objects.get(customer_id="c1")
    assert profile.email == "c1@example.com"
    assert Membership.objects.get(profile=profile, audience=audience).is_member
    assert forwards() == [(active.connection_id, "c1", audience.pk, "membership")]
    assert result.profiles_created == 1 and result.memberships_changed == 1 and result.forwards_queued == 1


def test_a_change_to_an_inactive_subscription_is_stored_but_not_queued():
    audience = AudienceFactory(audience_id=5)
    SubscriptionFactory(audience=audience, status=Subscription.Status.INACTIVE)

    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {5: True})])

    assert Membership.objects.get(profile__customer_id="c1").is_member
    assert Forward.objects.count() == 0


def test_repeating_the_current_state_queues_nothing():
    membership = MembershipFactory(audience=AudienceFactory(audience_id=7), is_member=True)
    SubscriptionFactory(audience=membership.audience)

    apply_changes([ProfileChange(ProfileInput(customer_id=membership.profile.customer_id), {7: True})])

    assert Forward.objects.count() == 0


def test_a_leave_is_recorded_as_an_ex_member_and_queued():
    membership = MembershipFactory(audience=AudienceFactory(audience_id=7), is_member=True)
    SubscriptionFactory(audience=membership.audience)

    apply_changes([ProfileChange(ProfileInput(customer_id=membership.profile.customer_id), {7: False})])

    membership.refresh_from_db()
    assert membership.is_member is False
    assert Forward.objects.filter(reason="membership").count() == 1


def test_an_identity_change_is_queued_where_the_profile_is_forwarded():
    membership = MembershipFactory(audience=AudienceFactory(audience_id=7))
    sub = SubscriptionFactory(audience=membership.audience)

    apply_changes([ProfileChange(ProfileInput(customer_id=membership.profile.customer_id, first_name="Grace"))])

    assert forwards() == [(sub.connection_id, membership.profile.customer_id, None, "identity")]


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="a PostgreSQL query plan")
def test_the_identity_forward_lookup_reads_only_the_changed_profiles_memberships_whatever_the_statistics():
    # A message changing the names of known people looks up where they are forwarded. Planned as
    # a join, that lookup read every membership of the subscribed audiences: 13 ms per message at
    # 10,000 rows, growing with the table. Here the table is written in bulk and never analyzed.
    audiences = [AudienceFactory() for _ in range(3)]
    subs = [SubscriptionFactory(audience=audience) for audience in audiences]
    SubscriptionFactory(audience=audiences[0], status=Subscription.Status.INACTIVE)
    profiles = Profile.objects.bulk_create([Profile(customer_id=f"c{n}") for n in range(1000)])
    now = timezone.now()
    Membership.objects.bulk_create(
        [Membership(profile=p, audience=a, is_member=True, changed_at=now) for p in profiles for a in audiences]
    )
    changed = {profiles[3].pk, profiles[500].pk}
    with connection.cursor() as cursor:
        # At 1,000,000 memberships without statistics the planner's guess crosses jit_above_cost;
        # here every plan does, and this server compiles them (checked on a statement of our own).
        cursor.execute("SET LOCAL jit_above_cost = 0")
        assert "JIT" in explain(cursor, "SELECT count(*) FROM connections_membership WHERE is_member")

    with CaptureQueriesContext(connection) as queries:
        found = connections_forwarding_profiles(changed)

    assert found == {(sub.connection_id, pk) for sub in subs for pk in changed}
    with connection.cursor() as cursor:
        plan = explain(cursor, queries.captured_queries[-1]["sql"])
    assert "membership_unique_profile_audience" in plan, plan
    assert "Seq Scan on connections_membership" not in plan, plan
    assert "membership_audience_member" not in plan, plan
    assert "JIT" not in plan, plan  # compiling took 40-550 ms for a 0.7 ms lookup


def explain(cursor, sql: str) -> str:
    cursor.execute(f"EXPLAIN (ANALYZE) {sql}")
    return "\n".join(row[0] for row in cursor.fetchall())


def test_an_identity_change_of_a_profile_not_forwarded_anywhere_queues_nothing():
    profile = ProfileFactory()
    update_profile_identity(profile, email="new@example.com")
    assert Profile.objects.get(pk=profile.pk).email == "new@example.com"
    assert Forward.objects.count() == 0


def test_profiles_are_found_by_mpid_before_customer_id():
    profile = ProfileFactory(customer_id="", mpid="42")
    apply_changes([ProfileChange(ProfileInput(customer_id="now-known", mpid="42"))])
    assert Profile.objects.get(pk=profile.pk).customer_id == "now-known"
    assert Profile.objects.count() == 1


def test_an_unknown_audience_is_created_with_its_name():
    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {99: True})], audience_names={99: "Fresh"})
    assert Membership.objects.get().audience.name == "Fresh"


def test_activation_backfills_current_members_only():
    audience = AudienceFactory()
    MembershipFactory(audience=audience, is_member=True, profile=ProfileFactory(customer_id="in"))
    MembershipFactory(audience=audience, is_member=False, profile=ProfileFactory(customer_id="out"))
    sub = SubscriptionFactory(audience=audience, status=Subscription.Status.INACTIVE)

    assert subscriptions.activate(sub) is True

    assert forwards() == [(sub.connection_id, "in", audience.pk, "activation")]


def test_subscribing_a_new_audience_backfills_and_resubscribing_is_idempotent():
    audience = AudienceFactory()
    MembershipFactory(audience=audience)
    connection = ConnectionFactory()
    _, created = subscriptions.subscribe(audience, connection)
    _, created_again = subscriptions.subscribe(audience, connection)
    assert (created, created_again) == (True, False)
    assert Forward.objects.filter(reason="activation").count() == 1


def test_deactivation_sends_nothing_and_cancels_what_is_queued():
    membership = MembershipFactory()
    sub = SubscriptionFactory(audience=membership.audience)
    apply_changes([ProfileChange(ProfileInput(customer_id=membership.profile.customer_id), {})])
    Forward.objects.create(
        connection=sub.connection,
        profile=membership.profile,
        audience=membership.audience,
        reason="membership",
        due_at="2026-01-01T00:00:00Z",
    )

    assert subscriptions.deactivate(sub) is True

    assert Forward.objects.count() == 0
    cancelled = Delivery.objects.get()
    assert cancelled.status == Delivery.Status.CANCELLED
    assert "Customer.io keeps" in cancelled.error


def test_deleting_a_subscription_cancels_what_is_queued():
    membership = MembershipFactory()
    sub = SubscriptionFactory(audience=membership.audience)
    apply_changes([ProfileChange(ProfileInput(customer_id=membership.profile.customer_id), {})])
    subscriptions.activate(sub)  # already active: no backfill
    assert Forward.objects.count() == 0
    Forward.objects.create(
        connection=sub.connection,
        profile=membership.profile,
        audience=membership.audience,
        reason="membership",
        due_at="2026-01-01T00:00:00Z",
    )
    subscriptions.delete_subscriptions([sub])
    assert not Subscription.objects.exists()
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_a_rename_resends_members_only_where_the_toggle_is_on():
    audience = AudienceFactory(name="Old")
    MembershipFactory(audience=audience)
    on = SubscriptionFactory(audience=audience, connection=ConnectionFactory(one_attribute_per_audience=True))
    SubscriptionFactory(audience=audience, connection=ConnectionFactory(one_attribute_per_audience=False))

    assert subscriptions.rename_audience(audience, "New") is True

    assert [(c, r) for c, _, _, r in forwards()] == [(on.connection_id, "rename")]
    assert subscriptions.rename_audience(audience, "New") is False


def test_a_profile_created_meanwhile_by_a_concurrent_message_gets_this_messages_values():
    from django.db import connection
    from django.utils import timezone

    from connections.services.ingest.profile_rows import ProfileRow, _insert

    first = ProfileFactory(customer_id="raced", email="old@example.com")  # committed by "the other" message
    mine = ProfileRow(None, "raced", None, email="new@example.com")

    created = _insert(connection, [mine], timezone.now())

    # Not inserted twice: this message takes the other's row and marks it for its own values.
    assert created == 0 and mine.pk == first.pk and mine.dirty
    assert Profile.objects.filter(customer_id="raced").count() == 1


def _changes(first: int, count: int, audience_id: int = 1) -> list[ProfileChange]:
    return [
        ProfileChange(ProfileInput(customer_id=f"c{n}", email=f"c{n}@example.com"), {audience_id: n % 3 != 0})
        for n in range(first, first + count)
    ]


def test_the_statements_per_batch_do_not_grow_with_its_size():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    apply_changes(_changes(0, 5))  # the audience exists from here on, as in a steady state
    with CaptureQueriesContext(connection) as small:
        apply_changes(_changes(100, 10) + _changes(0, 5))
    with CaptureQueriesContext(connection) as large:
        apply_changes(_changes(1000, 500) + _changes(0, 5))

    assert len(large.captured_queries) == len(small.captured_queries)


def test_a_batch_larger_than_one_values_statement_is_applied_whole():
    from connections.services.outbox import bulk

    subscription = SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    count = bulk.VALUES_CHUNK * 2 + 7  # several statements off PostgreSQL

    result = apply_changes(_changes(0, count))

    assert result.profiles_created == count and Profile.objects.count() == count
    assert Membership.objects.filter(audience=subscription.audience).count() == count
    assert Membership.objects.filter(is_member=True).count() == sum(1 for n in range(count) if n % 3 != 0)
    assert Forward.objects.filter(connection=subscription.connection).count() == count


def test_identity_and_membership_forwards_are_queued_in_one_statement_in_key_order():
    """Every outbox writer inserts all its keys in one statement, in one key order: a worker giving a
    claim's rows back (claims.requeue) then waits for this transaction instead of deadlocking with it
    (tests/reliability/test_outage.py[v2_batch-hang] met that deadlock when these were two statements)."""
    first, second = AudienceFactory(audience_id=1), AudienceFactory(audience_id=2)
    by_membership = SubscriptionFactory(audience=first).connection
    by_identity = SubscriptionFactory(audience=second).connection
    profile = ProfileFactory(customer_id="c1", first_name="Ada")
    MembershipFactory(profile=profile, audience=first, is_member=True)
    MembershipFactory(profile=profile, audience=second, is_member=True)

    with CaptureQueriesContext(connection) as queries:
        apply_changes([ProfileChange(ProfileInput(customer_id="c1", first_name="Grace"), {1: False})])

    inserts = [q["sql"] for q in queries if f"INSERT INTO {Forward._meta.db_table}".lower() in q["sql"].lower()]
    assert len(inserts) == 1
    assert forwards() == [
        (by_membership.pk, "c1", first.pk, Forward.Reason.MEMBERSHIP),
        (by_identity.pk, "c1", None, Forward.Reason.IDENTITY),
    ]
