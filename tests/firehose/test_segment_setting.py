"""The "Customer.io manual segment ID" audience subscription setting (issue 12 item 6)."""

import pytest

from connections.models import Forward, Subscription
from connections.services.forwarding.worker import forward_pending
from tests.conftest import STANDIN_WORKSPACES
from tests.support.firehose import audience, membership_request, official, row_counts, user_profile

pytestmark = pytest.mark.django_db

SETTING = "customerioSegmentId"


def segment_id() -> int | None:
    return Subscription.objects.get().customerio_segment_id


def test_the_registration_declares_the_optional_integer_setting(post):
    body = post(official("ModuleRegistrationRequest"), auth=None).json()

    [setting] = body["audience_processing_registration"]["audience_subscription_settings"]
    assert (setting["type"], setting["id"], setting["name"]) == ("integer", SETTING, "Customer.io manual segment ID")
    assert setting["required"] is False


def test_add_stores_it_and_update_changes_it(post, subscription_request):
    assert post(subscription_request(action="add", audience_subscription_settings={SETTING: "42"})).status_code == 200
    assert segment_id() == 42

    update = subscription_request(
        action="update",
        audience_subscription_settings={SETTING: " 43 "},
        previous_audience_subscription_settings={SETTING: "42"},
        audience_description="Signed up this week",
    )
    assert post(update).status_code == 200
    assert segment_id() == 43


def test_removing_it_in_mparticle_clears_it(post, subscription_request):
    post(subscription_request(action="add", audience_subscription_settings={SETTING: "42"}))

    update = subscription_request(
        action="update", audience_subscription_settings={}, previous_audience_subscription_settings={SETTING: "42"}
    )
    assert post(update).status_code == 200

    assert segment_id() is None


def test_a_message_without_the_setting_leaves_a_stored_id_alone(post, subscription_request):
    post(subscription_request(action="add", audience_subscription_settings={SETTING: "42"}))
    post(subscription_request(action="update", audience_subscription_settings={"Other": "x"}))
    post(subscription_request(action="update"))

    assert segment_id() == 42


@pytest.mark.parametrize("value", ["abc", "0", "-4", "1.5", "2147483648", "٣"])
def test_a_bad_value_is_refused_and_changes_nothing(post, subscription_request, value):
    post(subscription_request(action="add"))
    before = row_counts()

    response = post(subscription_request(action="update", audience_subscription_settings={SETTING: value}))

    assert response.status_code == 400
    assert response.json()["error"].startswith(
        f"audience_subscription_settings.{SETTING}: must be the id of a Customer.io manual segment"
    )
    assert row_counts() == before and segment_id() is None


def test_a_membership_message_carrying_it_keeps_it_current(post, subscription_request):
    post(subscription_request(action="add", audience_id=456))
    change = audience(456, "add", audience_subscription_settings={SETTING: "77"})

    assert post(membership_request(user_profile("c1", audiences=[change]))).status_code == 200

    assert segment_id() == 77


def test_a_membership_message_with_a_bad_value_is_refused(post, subscription_request):
    post(subscription_request(action="add", audience_id=456))
    before = row_counts()
    change = audience(456, "add", audience_subscription_settings={SETTING: "seventy"})

    response = post(membership_request(user_profile("c1", audiences=[change])))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("user_profiles[0].audiences[0].audience_subscription_settings.customerioSegmentId: ")
    assert row_counts() == before


# --- backfilling the segment (issue 26 item 6) ----------------------------------------------


@pytest.fixture
def members_sent(connection, standin, post, subscription_request):
    """Audience 456 on a connection to the stand-in, with c1 and c2 already sent (no segment yet)."""
    key, _region = STANDIN_WORKSPACES["site-us"]
    connection.site_id, connection.api_key = "site-us", key
    connection.save()
    post(subscription_request(action="add", audience_id=456))
    post(membership_request(user_profile("c1", audiences=[audience(456, "add")])))
    post(membership_request(user_profile("c2", audiences=[audience(456, "add")])))
    forward_pending(connection.pk)
    assert set(standin.people("site-us")) == {"c1", "c2"} and not Forward.objects.exists()
    return connection


def segment_adds(standin, segment) -> list[set[str]]:
    return [
        set(r.body["ids"]) for r in standin.requests("site-us") if r.path == f"/api/v1/segments/{segment}/add_customers"
    ]


def test_setting_it_backfills_the_existing_members_into_the_segment(
    members_sent, standin, post, subscription_request
):
    segment = standin.create_segment("site-us", "VIPs")

    settings = {SETTING: str(segment)}
    update = subscription_request(action="update", audience_id=456, audience_subscription_settings=settings)
    assert post(update).status_code == 200

    # Queued exactly as the admin's path queues them: the members, for the activation backfill.
    assert sorted(Forward.objects.values_list("profile__customer_id", "reason")) == [
        ("c1", "activation"), ("c2", "activation")
    ]
    forward_pending(members_sent.pk)
    assert standin.segment_members("site-us", segment) == {"c1", "c2"}


def test_the_same_id_again_sends_nothing_and_a_new_one_backfills_only_the_new_segment(
    members_sent, standin, post, subscription_request
):
    first, second = standin.create_segment("site-us", "A"), standin.create_segment("site-us", "B")
    post(subscription_request(action="update", audience_id=456, audience_subscription_settings={SETTING: f"{first}"}))
    forward_pending(members_sent.pk)

    # The same id, in a subscription message and in a membership message: nothing to send.
    post(subscription_request(action="update", audience_id=456, audience_subscription_settings={SETTING: f"{first}"}))
    same = audience(456, "add", audience_subscription_settings={SETTING: f"{first}"})
    post(membership_request(user_profile("c1", audiences=[same])))
    assert not Forward.objects.exists()

    post(subscription_request(action="update", audience_id=456, audience_subscription_settings={SETTING: f"{second}"}))
    forward_pending(members_sent.pk)

    assert segment_adds(standin, first) == [{"c1", "c2"}]  # sent once
    assert segment_adds(standin, second) == [{"c1", "c2"}]
    assert standin.segment_members("site-us", second) == {"c1", "c2"}
