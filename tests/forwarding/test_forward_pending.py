"""The forwarding engine over real HTTP to the stand-in: SPEC §2-§4, one behaviour per test."""

import time

import pytest
from django.utils import timezone

from cio_standin import Faults
from connections.models import Connection, Delivery, Forward, Subscription
from connections.services.connection import transitions as connection_state
from connections.services.forwarding.claims import claim, give_up_contested
from connections.services.forwarding.worker import forward_pending, send_claimed
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def change(customer_id, memberships=None, **identity):
    return apply_changes([ProfileChange(ProfileInput(customer_id=customer_id, **identity), memberships or {})])


@pytest.fixture
def setup(standin, workspace_connection):
    def make(toggle=False, transport="v2_batch", audiences=((123, "New Users"),), site_id="site-us"):
        connection = workspace_connection(site_id, one_attribute_per_audience=toggle, transport=transport)
        for audience_id, name in audiences:
            subscriptions.subscribe(AudienceFactory(audience_id=audience_id, name=name), connection)
        return connection

    return make


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_a_join_reaches_customer_io_as_segment_membership(setup, standin, transport):
    connection = setup(audiences=[(456, "B"), (123, "A")], transport=transport)
    change("c1", {456: True, 123: True}, email="c1@example.com", first_name="Ada")

    report = forward_pending(connection.pk)

    assert report.succeeded == 1 and report.requests == 1
    assert standin.people("site-us")["c1"] == {
        "email": "c1@example.com",
        "first_name": "Ada",
        "SegmentMembership": "'123','456'",
    }
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.attributes["SegmentMembership"] == "'123','456'"
    assert delivery.http_status == 200 and delivery.transport == transport
    assert not Forward.objects.exists()


def test_with_the_toggle_on_each_audience_gets_its_own_attribute(setup, standin):
    connection = setup(toggle=True, audiences=[(1, "New Users"), (2, 'Café "VIP", 2.0')])
    change("c1", {1: True, 2: True})
    forward_pending(connection.pk)
    change("c1", {2: False})
    forward_pending(connection.pk)

    assert standin.people("site-us")["c1"] == {"In New Users": "true", 'In Café "VIP", 2.0': "false"}


def test_many_changes_before_sending_become_one_request_with_the_latest_state(setup, standin):
    connection = setup(audiences=[(1, "A"), (2, "B")])
    change("c1", {1: True})
    change("c1", {2: True})
    change("c1", {1: False}, email="late@example.com")

    report = forward_pending(connection.pk)

    assert report.requests == 1
    assert standin.people("site-us")["c1"] == {"email": "late@example.com", "SegmentMembership": "'2'"}
    assert Delivery.objects.count() == 1


def test_v2_packs_many_profiles_into_one_request(setup, standin):
    connection = setup()
    apply_changes([ProfileChange(ProfileInput(customer_id=f"c{i}"), {123: True}) for i in range(50)])

    report = forward_pending(connection.pk)

    assert (report.requests, report.succeeded) == (1, 50)
    assert len(standin.people("site-us")) == 50
    assert Delivery.objects.filter(status="succeeded").values("request_id").distinct().count() == 1


def test_a_profile_without_customer_id_is_skipped_with_the_reason(setup, standin):
    connection = setup()
    apply_changes([ProfileChange(ProfileInput(mpid="777"), {123: True})])

    forward_pending(connection.pk)

    skipped = Delivery.objects.get()
    assert skipped.status == Delivery.Status.SKIPPED and "customer" in skipped.error.lower()
    assert standin.requests() == []


def test_a_segment_membership_over_1000_bytes_fails_naming_the_limit(setup, standin):
    audiences = [(10**9 + i, f"A{i}") for i in range(100)]
    connection = setup(audiences=audiences)
    change("c1", {audience_id: True for audience_id, _ in audiences})

    forward_pending(connection.pk)

    failed = Delivery.objects.get()
    assert failed.status == Delivery.Status.FAILED
    assert "1,000 bytes" in failed.error and "SegmentMembership" in failed.error
    assert standin.requests() == []


def test_deactivated_subscriptions_are_left_out_of_segment_membership(setup, standin):
    connection = setup(audiences=[(1, "A"), (2, "B")])
    change("c1", {1: True, 2: True})
    forward_pending(connection.pk)
    subscriptions.deactivate(Subscription.objects.get(audience__audience_id=1))
    assert standin.people("site-us")["c1"]["SegmentMembership"] == "'1','2'"  # nothing sent on deactivation

    change("c1", {2: False})
    forward_pending(connection.pk)
    change("c1", {2: True})
    forward_pending(connection.pk)

    assert standin.people("site-us")["c1"]["SegmentMembership"] == "'2'"


def test_a_400_fails_at_once_with_customer_ios_message(setup, standin):
    connection = setup()
    change("c1", {123: True})
    standin.set_faults(Faults(share=1.0, statuses=[400]))

    report = forward_pending(connection.pk)

    assert report.failed == 1 and report.retrying == 0
    failed = Delivery.objects.get()
    assert failed.status == Delivery.Status.FAILED and failed.http_status == 400 and failed.retry_at is None
    assert not Forward.objects.exists()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_retryable_answer_is_retried_later_with_backoff(setup, standin, status):
    connection = setup()
    change("c1", {123: True})
    standin.set_faults(Faults(share=1.0, statuses=[status]))

    report = forward_pending(connection.pk)

    assert report.retrying == 1
    attempt = Delivery.objects.get()
    assert attempt.status == Delivery.Status.RETRYING and attempt.http_status == status and attempt.retry_at
    pending = Forward.objects.get()
    assert pending.attempts == 1 and pending.due_at > timezone.now() and pending.claim_token == ""
    connection.refresh_from_db()
    if status in (429, 503):  # the stand-in answers these with Retry-After: 1
        # Customer.io asked to wait: the whole connection pauses, not this profile only.
        assert connection.paused_until > timezone.now()
        assert forward_pending(connection.pk).paused_for > 0
        time.sleep((connection.paused_until - timezone.now()).total_seconds())

    standin.clear_faults()
    Forward.objects.update(due_at=timezone.now())
    forward_pending(connection.pk)
    assert Delivery.objects.order_by("-attempt").first().attempt == 2
    assert standin.people("site-us")["c1"]["SegmentMembership"] == "'123'"


def test_a_transient_failure_is_never_given_up(setup, standin, settings):
    # The breaker is left out here (tests/connection/breaker/test_outage_and_recovery.py): only the
    # per-row retries count.
    settings.BREAKER_MIN_SECONDS = 3600
    connection = setup()
    change("c1", {123: True})
    standin.set_faults(Faults(share=1.0, statuses=[503, 500], retry_after=None))
    for _ in range(12):  # more than the 8 attempts after which the seed gave up
        forward_pending(connection.pk)
        Forward.objects.update(due_at=timezone.now())
    standin.clear_faults()
    forward_pending(connection.pk)

    attempts = list(Delivery.objects.order_by("attempt").values_list("attempt", "status"))
    assert attempts == [(n, "retrying") for n in range(1, 13)] + [(13, "succeeded")]
    assert standin.people("site-us")["c1"]["SegmentMembership"] == "'123'"
    assert not Forward.objects.exists()


def test_rejected_credentials_fault_the_connection_and_hold_its_forwards(setup, standin):
    connection = setup()
    Connection.objects.filter(pk=connection.pk).update()
    connection.api_key = "sk-wrong"
    connection.save()
    change("c1", {123: True})

    report = forward_pending(connection.pk)

    connection.refresh_from_db()
    assert report.faulted and connection.state == Connection.State.FAULTED and connection.last_error
    assert Forward.objects.filter(claim_token="").count() == 1
    assert forward_pending(connection.pk).sent == 0  # held while faulted

    connection.api_key = "sk-us-4d2f9a8b1c"
    connection.save()
    connection_state.resume(connection)
    forward_pending(connection.pk)
    assert standin.people("site-us")["c1"]["SegmentMembership"] == "'123'"


def test_two_claims_never_share_a_profile(setup):
    connection = setup()
    apply_changes([ProfileChange(ProfileInput(customer_id=f"c{i}"), {123: True}) for i in range(10)])
    change("c0", {123: False})  # a second row for c0

    _, first = claim(connection.pk, 5)
    _, second = claim(connection.pk, 100)

    first_profiles = {r.profile_id for r in first}
    assert len(first_profiles) == 5
    assert first_profiles.isdisjoint({r.profile_id for r in second})
    assert len(first) + len(second) == Forward.objects.count()


def test_a_profile_in_flight_is_not_claimed_again_until_it_is_done(setup):
    connection = setup()
    change("c1", {123: True})
    _, first = claim(connection.pk, 10)
    change("c1", {123: False})  # arrives while the first request is in flight

    _, second = claim(connection.pk, 10)

    assert len(first) == 1 and second == []


def test_a_deleted_profile_reference_does_not_stop_the_others(setup, standin):
    connection = setup()
    change("c1", {123: True})
    profile = ProfileFactory(customer_id="c2")
    apply_changes([ProfileChange(ProfileInput(customer_id="c2"), {123: True})])
    profile.delete()
    forward_pending(connection.pk)
    assert set(standin.people("site-us")) == {"c1"}


def test_a_claim_backs_off_a_profile_another_claim_took_at_the_same_moment(setup):
    connection = setup()
    change("c1", {123: True})
    claim(connection.pk, 10)
    # Simulate the race: a second row of c1 claimed by a concurrent claim before either checked.
    change("c1", {123: False})
    Forward.objects.filter(claim_token="").update(
        claim_token="concurrent", claimed_until=timezone.now() + timezone.timedelta(minutes=5)
    )
    give_up_contested(connection.pk, "concurrent", timezone.now())

    assert Forward.objects.filter(claim_token="concurrent").count() == 0
    assert Forward.objects.filter(claim_token="").count() == 1


def test_a_claim_whose_lease_was_taken_over_does_not_send_its_older_plan(setup, standin):
    connection = setup()
    change("c1", {123: True})
    token, rows = claim(connection.pk, 10)
    # The lease ran out and another worker took the row over.
    Forward.objects.update(claim_token="other", claimed_until=timezone.now() + timezone.timedelta(minutes=5))
    report = send_claimed(connection, token, rows)

    assert report.requests == 0 and standin.requests() == []
    assert Forward.objects.get().claim_token == "other"


def test_a_profile_that_gains_a_customer_id_later_gets_its_earlier_memberships(setup, standin):
    # Issue 16 item 2: known first by mpid only (skipped), then given a customer ID with no
    # membership change: the identity forward carries the full state, "In X" included.
    connection = setup(toggle=True, audiences=[(1, "New Users"), (2, "VIP")])
    apply_changes([ProfileChange(ProfileInput(mpid="m-1"), {1: True, 2: False})])
    forward_pending(connection.pk)
    assert Delivery.objects.get().status == Delivery.Status.SKIPPED

    apply_changes([ProfileChange(ProfileInput(customer_id="c1", mpid="m-1"), {})])
    forward_pending(connection.pk)

    assert standin.people("site-us")["c1"] == {"In New Users": "true", "In VIP": "false"}


@pytest.mark.parametrize("customer_id", [".", ".."])
def test_a_customer_id_of_only_dots_fails_on_v1_naming_the_reason(setup, standin, customer_id):
    # PUT /api/v1/customers/. would be resolved as a dot segment, addressing /api/v1/customers/.
    connection = setup(transport="v1")
    change(customer_id, {123: True})

    report = forward_pending(connection.pk)

    failed = Delivery.objects.get()
    assert (report.failed, report.requests) == (1, 0)
    assert failed.status == Delivery.Status.FAILED
    assert "dot" in failed.error and "v1" in failed.error and "v2" in failed.error
    assert standin.requests() == []
    assert not Forward.objects.exists()


@pytest.mark.parametrize(("transport", "customer_id"), [("v2_batch", "."), ("v2_batch", ".."), ("v1", "...")])
def test_other_dotted_customer_ids_reach_that_person(setup, standin, transport, customer_id):
    # v2 carries the id in the JSON body, never in the path; "..." is an ordinary path segment.
    connection = setup(transport=transport)
    change(customer_id, {123: True})

    forward_pending(connection.pk)

    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED
    assert standin.people("site-us") == {customer_id: {"SegmentMembership": "'123'"}}


def sent_attributes(request) -> dict[str, str]:
    """The attributes one recorded request carried for its (single) person."""
    body = request.body
    return body["batch"][0]["attributes"] if "batch" in body else body


def test_after_a_toggle_change_the_next_forward_uses_the_new_mode_and_nothing_is_cleaned_up(setup, standin):
    connection = setup(audiences=[(1, "A"), (2, "B")])
    change("c1", {1: True})
    forward_pending(connection.pk)
    assert standin.people("site-us")["c1"] == {"SegmentMembership": "'1'"}

    change("c1", {2: True})  # queued while the toggle is off...
    connection.one_attribute_per_audience = True
    connection.save()  # ...switched on (as the admin saves it) before it is sent
    forward_pending(connection.pk)

    # The new mode only: no SegmentMembership, neither sent nor cleared.
    assert sent_attributes(standin.requests("site-us")[-1]) == {"In B": "true"}
    assert standin.people("site-us")["c1"] == {"SegmentMembership": "'1'", "In B": "true"}

    connection.one_attribute_per_audience = False
    connection.save()
    change("c1", {1: False})
    forward_pending(connection.pk)

    # Back to SegmentMembership of every forwarded audience; "In B" is left as it is.
    assert sent_attributes(standin.requests("site-us")[-1]) == {"SegmentMembership": "'2'"}
    assert standin.people("site-us")["c1"] == {"SegmentMembership": "'2'", "In B": "true"}
    assert len(standin.requests("site-us")) == 3, "a toggle change itself sends nothing"


@pytest.mark.parametrize("transport", ["v1", "v2_batch"])
def test_the_rate_limiter_keeps_every_second_under_the_connection_limit(setup, standin, settings, transport):
    # Issue 17: the limiter in the path. v2 batches of 5 profiles make several requests too.
    settings.FORWARD_BATCH_SIZE = 5
    connection = setup(transport=transport)
    Connection.objects.filter(pk=connection.pk).update(rate_limit=4)
    apply_changes([ProfileChange(ProfileInput(customer_id=f"r{i}"), {123: True}) for i in range(30)])

    started = time.monotonic()
    while Forward.objects.exists():
        forward_pending(connection.pk)
    elapsed = time.monotonic() - started

    requests = len(standin.requests("site-us"))
    assert standin.stats()["workspaces"]["site-us"]["max_requests_in_1s"] <= 4
    # n requests at 4 per 1.05 s window cannot take less than (n / 4 - 1) windows.
    assert elapsed >= (requests / 4 - 1) * 1.0
    assert len(standin.people("site-us")) == 30
