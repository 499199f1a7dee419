"""Profiles edited in the admin are forwarded like any other change (SPEC §3, §5.3)."""

from __future__ import annotations

import pytest

from connections.models import Forward, Membership, Profile
from tests.support.admin import add_inline_row, admin_url, changeform_data
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def membership(db):
    """A profile that is a member of an audience forwarded to one connection."""
    membership = MembershipFactory(audience=AudienceFactory(audience_id=123))
    SubscriptionFactory(audience=membership.audience)
    return membership


def edit(client, profile: Profile, mutate=None):  # type: ignore[no-untyped-def]
    url = admin_url(Profile, "change", profile.pk)
    data = changeform_data(client.get(url))
    if mutate:
        mutate(data)
    return client.post(url, data)


def queued(reason: str) -> list[tuple[int, int | None]]:
    return sorted(Forward.objects.filter(reason=reason).values_list("profile_id", "audience_id"))


def test_an_email_change_is_forwarded(client, marketer, membership):
    client.force_login(marketer)

    response = edit(client, membership.profile, lambda data: data.update(email="new@example.com"))

    assert response.status_code == 302
    assert Profile.objects.get(pk=membership.profile_id).email == "new@example.com"
    assert queued(Forward.Reason.IDENTITY) == [(membership.profile_id, None)]


def test_saving_an_unchanged_profile_forwards_nothing(client, marketer, membership):
    client.force_login(marketer)

    response = edit(client, membership.profile)

    assert response.status_code == 302
    assert Forward.objects.count() == 0


def test_leaving_an_audience_in_the_inline_is_recorded_and_forwarded(client, marketer, membership):
    client.force_login(marketer)

    response = edit(client, membership.profile, lambda data: data.pop("memberships-0-is_member"))

    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.is_member is False
    assert queued(Forward.Reason.MEMBERSHIP) == [(membership.profile_id, membership.audience_id)]


def test_joining_an_audience_in_the_inline_is_recorded_and_forwarded(client, marketer, membership):
    vip = AudienceFactory(audience_id=456)
    SubscriptionFactory(audience=vip)
    client.force_login(marketer)

    response = edit(
        client,
        membership.profile,
        lambda data: add_inline_row(
            data, "memberships", audience=vip.pk, is_member="on", profile=membership.profile_id
        ),
    )

    assert response.status_code == 302
    assert Membership.objects.get(profile=membership.profile, audience=vip).is_member
    assert queued(Forward.Reason.MEMBERSHIP) == [(membership.profile_id, vip.pk)]


def test_a_saved_membership_keeps_its_audience(client, marketer, membership):
    client.force_login(marketer)
    url = admin_url(Profile, "change", membership.profile_id)
    row = client.get(url).context["inline_admin_formsets"][0].formset.forms[0]
    assert row.fields["audience"].disabled

    other = AudienceFactory()

    response = edit(client, membership.profile, lambda data: data.update({"memberships-0-audience": other.pk}))

    assert response.status_code == 302
    assert list(Membership.objects.values_list("profile_id", "audience_id")) == [
        (membership.profile_id, membership.audience_id)
    ]
    assert Forward.objects.count() == 0


def test_the_customer_id_is_fixed_once_the_profile_exists(client, marketer, membership):
    client.force_login(marketer)

    form = client.get(admin_url(Profile, "change", membership.profile_id)).context["adminform"].form

    assert "customer_id" not in form.fields
    assert "mpid" not in form.fields


def test_a_new_profile_needs_a_customer_id_or_an_mparticle_id(client, marketer):
    client.force_login(marketer)

    response = client.post(admin_url(Profile, "add"), {"email": "nobody@example.com"})

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert not Profile.objects.exists()


def test_profiles_are_found_by_customer_id_prefix_or_exact_email(client, marketer):
    ada = ProfileFactory(customer_id="cust-100", email="Ada@Example.com")
    ProfileFactory(customer_id="other-1", email="ada@example.org")
    client.force_login(marketer)
    changelist = admin_url(Profile, "changelist")

    by_prefix = client.get(changelist, {"q": "cust-1"}).context["cl"].result_list
    by_email = client.get(changelist, {"q": "ada@example.com"}).context["cl"].result_list

    assert list(by_prefix) == [ada]
    assert list(by_email) == [ada]


def test_a_new_profile_with_a_membership_is_forwarded(client, marketer):
    audience = AudienceFactory(audience_id=789)
    subscription = SubscriptionFactory(audience=audience)
    client.force_login(marketer)
    data = changeform_data(client.get(admin_url(Profile, "add"))) | {
        "customer_id": "cust-new",
        "email": "n@example.com",
    }
    add_inline_row(data, "memberships", audience=audience.pk, is_member="on")

    response = client.post(admin_url(Profile, "add"), data)

    assert response.status_code == 302
    profile = Profile.objects.get(customer_id="cust-new")
    assert profile.memberships.get().audience == audience
    forward = Forward.objects.get()
    assert (forward.connection_id, forward.profile_id) == (subscription.connection_id, profile.pk)


def test_memberships_of_a_profile_without_identifiers_are_read_only(client, marketer):
    membership = MembershipFactory(profile=ProfileFactory(customer_id="", mpid=None))
    client.force_login(marketer)

    response = client.get(admin_url(Profile, "change", membership.profile_id))

    inline = response.context["inline_admin_formsets"][0]
    assert not inline.has_add_permission
    assert not inline.has_change_permission


def test_audiences_are_offered_by_autocomplete(client, marketer):
    new_users = AudienceFactory(name="New Users")
    AudienceFactory(name="Churned")
    client.force_login(marketer)

    response = client.get(
        "/admin/autocomplete/",
        {"term": "New", "app_label": "connections", "model_name": "membership", "field_name": "audience"},
    )

    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == [str(new_users)]
