"""audience_membership_change_request: memberships, identities, names, verification, forwards."""

import pytest

from connections.models import Audience, FirehoseMessage, Forward, Membership, Profile
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory, SubscriptionFactory
from tests.support.firehose import audience, membership_request, row_counts, user_profile

pytestmark = pytest.mark.django_db


def memberships() -> set[tuple[str, int, bool]]:
    return {
        (m.profile.customer_id, m.audience.audience_id, m.is_member)
        for m in Membership.objects.select_related("profile", "audience")
    }


def test_add_and_delete_change_membership(post):
    response = post(
        membership_request(
            user_profile("c1", audiences=[audience(1, "add"), audience(2, "delete")]),
            user_profile("c2", audiences=[audience(1, "delete")]),
        )
    )

    assert response.status_code == 200
    assert response.json()["suspend_subscription"] is False
    assert memberships() == {("c1", 1, True), ("c1", 2, False), ("c2", 1, False)}


def test_a_delete_after_an_add_leaves_the_profile_out(post):
    post(membership_request(user_profile("c1", audiences=[audience(1, "add")])))
    post(membership_request(user_profile("c1", audiences=[audience(1, "delete")])))

    assert memberships() == {("c1", 1, False)}


def test_the_raw_customer_id_email_and_mpid_are_stored(post):
    post(membership_request(user_profile("c1", email="ada@example.com", mpid="-8446", audiences=[audience(1, "add")])))

    profile = Profile.objects.get()
    assert (profile.customer_id, profile.email, profile.mpid) == ("c1", "ada@example.com", "-8446")


def test_hashed_identities_never_become_the_customer_id_or_email(post):
    profile = user_profile("cafe0123", email="e179e95c00e7718ab4a23840f992ea63", mpid="7", encoding="sha256")
    profile["audiences"] = [audience(1, "add")]

    post(membership_request(profile))

    stored = Profile.objects.get()
    assert (stored.customer_id, stored.email, stored.mpid) == ("", "", "7")


def test_a_raw_identity_is_used_beside_hashed_ones(post):
    profile = user_profile("hashed-id", email="hashed-email", mpid="7", encoding="md5")
    profile["user_identities"].append({"type": "customer", "encoding": "raw", "value": "c1"})
    profile["audiences"] = [audience(1, "add")]

    post(membership_request(profile))

    assert Profile.objects.get().customer_id == "c1"


def test_a_profile_without_a_raw_customer_id_is_stored_by_mpid_and_not_forwarded(post):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1))

    post(membership_request(user_profile(mpid="42", audiences=[audience(1, "add")])))

    assert Profile.objects.get().mpid == "42"
    assert Membership.objects.get().is_member
    # Queued like any other: the forwarding engine records it as skipped (no Customer ID).
    assert Forward.objects.get().profile.customer_id == ""


def test_a_later_message_completes_a_profile_known_by_mpid(post):
    post(membership_request(user_profile(mpid="42", audiences=[audience(1, "add")])))
    post(membership_request(user_profile("c1", mpid="42", audiences=[audience(2, "add")])))

    assert Profile.objects.get().customer_id == "c1"
    assert memberships() == {("c1", 1, True), ("c1", 2, True)}


def test_a_profile_naming_nobody_is_ignored(post):
    response = post(membership_request(user_profile(audiences=[audience(1, "add")])))

    assert response.status_code == 200
    assert Profile.objects.count() == 0


def test_attribute_update_does_not_change_membership(post):
    MembershipFactory(profile=ProfileFactory(customer_id="c1"), audience=AudienceFactory(audience_id=1))

    post(
        membership_request(
            user_profile("c1", audiences=[audience(1, "attribute_update"), audience(2, "attribute_update")])
        )
    )

    assert memberships() == {("c1", 1, True)}
    assert not Audience.objects.filter(audience_id=2).exists()


def test_first_and_last_name_come_from_the_shared_user_attributes(post):
    attributes = [
        {"key": "$FirstName", "value": "Ada", "action": "upsert"},
        {"key": "$LastName", "value": "Lovelace", "action": "upsert"},
        {"key": "Favourite colour", "value": "green", "action": "upsert"},
    ]

    post(
        membership_request(user_profile("c1", audiences=[audience(1, "attribute_update", user_attributes=attributes)]))
    )

    profile = Profile.objects.get()
    assert (profile.first_name, profile.last_name) == ("Ada", "Lovelace")


def test_an_attribute_update_of_a_name_is_forwarded_as_an_identity_change(post):
    membership = MembershipFactory(profile=ProfileFactory(customer_id="c1"), audience=AudienceFactory(audience_id=1))
    sub = SubscriptionFactory(audience=membership.audience)
    attributes = [{"key": "$FirstName", "value": "Grace", "action": "upsert"}]

    post(
        membership_request(user_profile("c1", audiences=[audience(1, "attribute_update", user_attributes=attributes)]))
    )

    forward = Forward.objects.get()
    assert (forward.connection_id, forward.reason) == (sub.connection_id, "identity")
    assert memberships() == {("c1", 1, True)}


def test_deleting_a_name_attribute_clears_it(post):
    ProfileFactory(customer_id="c1", first_name="Ada", last_name="Lovelace")
    attributes = [{"key": "$LastName", "action": "delete"}]

    post(
        membership_request(user_profile("c1", audiences=[audience(1, "attribute_update", user_attributes=attributes)]))
    )

    profile = Profile.objects.get()
    assert (profile.first_name, profile.last_name) == ("Ada", "")


def test_names_not_given_are_kept(post):
    ProfileFactory(customer_id="c1", email="ada@example.com", first_name="Ada", last_name="Lovelace")

    post(membership_request(user_profile("c1", audiences=[audience(1, "add")])))

    profile = Profile.objects.get()
    assert (profile.email, profile.first_name, profile.last_name) == ("ada@example.com", "Ada", "Lovelace")


def test_a_request_without_user_profiles_is_a_verification_that_changes_nothing(post):
    message = membership_request()
    del message["user_profiles"]
    before = row_counts()

    response = post(message)

    assert response.status_code == 200
    assert response.json()["type"] == "audience_membership_change_response"
    assert response.json()["suspend_subscription"] is False
    after = row_counts()
    assert after.pop("connections.FirehoseMessage") == before.pop("connections.FirehoseMessage") + 1
    assert after == before


def test_unknown_audiences_are_created_with_the_name_from_the_message(post):
    post(membership_request(user_profile("c1", audiences=[audience(9, "add", name='Café "VIP", 2.0')])))

    assert Audience.objects.get(audience_id=9).name == 'Café "VIP", 2.0'


def test_a_change_is_queued_for_every_active_subscription(post):
    active = SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    SubscriptionFactory(audience=active.audience, status="inactive")

    post(
        membership_request(
            user_profile("c1", audiences=[audience(1, "add")]),
            user_profile("c2", audiences=[audience(1, "delete")]),
        )
    )

    assert sorted((f.connection_id, f.profile.customer_id, f.reason) for f in Forward.objects.all()) == [
        (active.connection_id, "c1", "membership"),
        (active.connection_id, "c2", "membership"),
    ]


def test_a_message_of_many_profiles_is_applied_with_a_bounded_number_of_queries(post, django_assert_max_num_queries):
    SubscriptionFactory(audience=AudienceFactory(audience_id=1))
    profiles = [
        user_profile(f"c{n}", email=f"p{n}@example.com", mpid=str(n), audiences=[audience(1 + n % 3, "add")])
        for n in range(100)
    ]

    with django_assert_max_num_queries(30):
        response = post(membership_request(*profiles))

    assert response.status_code == 200
    assert Profile.objects.count() == 100
    assert FirehoseMessage.objects.count() == 1
