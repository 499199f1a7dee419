"""Issue 12 on the worker path, over real HTTP to the stand-in: identifiers, update-only,
SegmentMembership always, and manual segments with the seed's rules (backfill, coalescing,
deactivation sends nothing, retries)."""

import pytest
from django.utils import timezone

from cio_standin import Faults
from connections.models import Connection, Delivery, Forward
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.ingest.segments import set_segment_id
from connections.services.resync import backfill
from connections.services.resync import runs as resync
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db

SITE = "site-us"


def person(customer_id="", email=None, audiences=None, first_name=None):
    return ProfileChange(ProfileInput(customer_id=customer_id, email=email, first_name=first_name), audiences or {})


@pytest.fixture
def connect(standin, workspace_connection):
    def make(*, segment=True, audiences=(1,), **fields):
        connection = workspace_connection(SITE, **fields)
        segment_id = standin.create_segment(SITE, "VIPs") if segment else None
        for audience_id in audiences:
            audience = AudienceFactory(audience_id=audience_id, name=f"A{audience_id}")
            sub, _ = subscriptions.subscribe(audience, connection)
            if segment and audience_id == audiences[0]:
                set_segment_id(sub, segment_id)
        return connection, segment_id

    return make


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
@pytest.mark.parametrize("toggle", [False, True])
@pytest.mark.parametrize("identify_by", ["customer_id", "customer_id_or_email", "email"])
def test_every_identifier_transport_and_toggle_reaches_attributes_and_segment(
    connect, standin, transport, toggle, identify_by
):
    connection, segment_id = connect(transport=transport, one_attribute_per_audience=toggle, identify_by=identify_by)
    apply_changes([person("c1", "ada@example.com", {1: True}), person("", "bob@example.com", {1: True})])

    forward_pending(connection.pk)

    people = standin.people(SITE)
    expected_key = {"customer_id": "c1", "customer_id_or_email": "c1", "email": "ada@example.com"}[identify_by]
    membership = {"In A1": "true"} if toggle else {"SegmentMembership": "'1'"}
    assert {k: v for k, v in people[expected_key].items() if k != "email"} == membership
    in_segment = standin.segment_members(SITE, segment_id)
    if identify_by == "customer_id":
        # Bob has no customer ID: skipped, with the reason in the log.
        skipped = Delivery.objects.get(status=Delivery.Status.SKIPPED)
        assert "customer_id" in skipped.error and in_segment == {"c1"}
    else:
        assert "bob@example.com" in people and len(in_segment) == 2
    adds = Delivery.objects.filter(action="segment_add", segment_id=segment_id, status="succeeded")
    assert adds.count() == len(in_segment)


def test_a_person_without_an_email_is_skipped_when_people_are_identified_by_email(connect, standin):
    connection, _ = connect(identify_by="email")
    apply_changes([person("c1", None, {1: True})])

    report = forward_pending(connection.pk)

    assert report.skipped == 1 and report.requests == 0
    assert Delivery.objects.get().error == "profile has no email; this connection identifies people by email"


def test_update_only_sends_the_flag_and_creates_nobody(connect, standin):
    connection, _ = connect(segment=False, update_existing_only=True)
    apply_changes([person("c1", None, {1: True})])

    forward_pending(connection.pk)

    (request,) = [r for r in standin.requests(SITE) if r.path == "/api/v2/batch"]
    assert request.body["batch"][0]["attributes"]["_update"] is True
    assert "c1" not in standin.people(SITE)  # Customer.io never had this person


def test_segment_membership_always_lists_every_audience_with_the_toggle_on(connect, standin):
    connection, _ = connect(
        segment=False, audiences=(1, 2), one_attribute_per_audience=True, segment_membership_always=True
    )
    apply_changes([person("c1", None, {1: True, 2: True})])
    forward_pending(connection.pk)
    apply_changes([person("c1", None, {2: False})])
    forward_pending(connection.pk)

    assert standin.people(SITE)["c1"] == {"In A1": "true", "In A2": "false", "SegmentMembership": "'1'"}


def test_a_leave_removes_the_person_from_the_segment_after_the_identify(connect, standin):
    connection, segment_id = connect()
    apply_changes([person("c1", None, {1: True})])
    forward_pending(connection.pk)
    assert standin.segment_members(SITE, segment_id) == {"c1"}

    apply_changes([person("c1", None, {1: False})])
    forward_pending(connection.pk)

    assert standin.segment_members(SITE, segment_id) == set()
    paths = [r.path for r in standin.requests(SITE) if r.status == 200]
    assert paths[-2:] == ["/api/v2/batch", f"/api/v1/segments/{segment_id}/remove_customers"]
    removed = Delivery.objects.get(action="segment_remove")
    assert (removed.segment_id, removed.status, removed.customer_id) == (segment_id, "succeeded", "c1")


def test_many_changes_coalesce_into_the_latest_segment_state(connect, standin):
    connection, segment_id = connect()
    for member in (True, False, True, False, True):
        apply_changes([person("c1", None, {1: member})])

    report = forward_pending(connection.pk)

    assert report.requests == 2  # one identify, one add: the latest state only
    assert standin.segment_members(SITE, segment_id) == {"c1"}


def test_2500_members_are_backfilled_into_a_new_segment_in_three_requests(connect, standin, settings):
    settings.BACKFILL_INLINE_MAX = 5000  # queued at once, so that forward_pending sees it all
    connection, _ = connect(segment=False)
    apply_changes([person(f"m{i}", None, {1: True}) for i in range(2500)])
    forward_pending(connection.pk)
    segment_id = standin.create_segment(SITE, "Late segment")
    subscription = connection.subscriptions.get()

    set_segment_id(subscription, segment_id)  # an active subscription: its members are backfilled
    forward_pending(connection.pk)

    adds = [r for r in standin.requests(SITE) if r.path.endswith("/add_customers")]
    assert [len(r.body["ids"]) for r in adds] == [1000, 1000, 500]
    assert len(standin.segment_members(SITE, segment_id)) == 2500


def test_deactivation_sends_nothing_and_reactivation_backfills_the_segment(connect, standin):
    connection, segment_id = connect()
    apply_changes([person("c1", None, {1: True})])
    forward_pending(connection.pk)
    subscription = connection.subscriptions.get()
    subscriptions.deactivate(subscription)
    apply_changes([person("c1", None, {1: False}), person("c2", None, {1: True})])
    requests_before = len(standin.requests(SITE))

    forward_pending(connection.pk)

    assert len(standin.requests(SITE)) == requests_before  # nothing sent while inactive
    assert standin.segment_members(SITE, segment_id) == {"c1"}  # Customer.io keeps what it had
    subscriptions.activate(subscription)
    forward_pending(connection.pk)
    # The backfill sends the current members: c2 is added; c1 left while the subscription was
    # inactive, and Customer.io keeps what it had until a resync, which sends ex-members too.
    assert standin.segment_members(SITE, segment_id) == {"c1", "c2"}
    resync.queue_all(resync.scope_for(connection))
    forward_pending(connection.pk)
    assert standin.segment_members(SITE, segment_id) == {"c2"}


def test_a_failed_segment_request_is_retried_with_the_identify_and_nothing_is_lost(connect, standin):
    connection, segment_id = connect(transport="v1")
    apply_changes([person("c1", None, {1: True})])
    # The identify goes through; the segment request meets a 503.
    standin.set_faults(Faults(share=1.0, statuses=[503], retry_after=None, path_contains="/segments/"))

    forward_pending(connection.pk)
    standin.clear_faults()

    assert Delivery.objects.get(action="segment_add").status == "retrying"
    assert Forward.objects.count() == 1  # the profile waits, identify included
    Forward.objects.update(due_at=timezone.now())
    forward_pending(connection.pk)
    assert standin.segment_members(SITE, segment_id) == {"c1"}
    assert not Forward.objects.exists()
    assert Connection.objects.get(pk=connection.pk).state == "active"


def test_backfill_of_a_large_audience_sets_the_segment_through_a_worker(connect, standin, settings):
    settings.BACKFILL_INLINE_MAX = 2
    connection, segment_id = connect()
    apply_changes([person(f"m{i}", None, {1: True}) for i in range(5)])
    forward_pending(connection.pk)
    Delivery.objects.all().delete()
    subscription = connection.subscriptions.get()
    subscriptions.deactivate(subscription)
    subscriptions.activate(subscription)
    assert not Forward.objects.exists()  # recorded only: a worker queues it

    backfill.queue_for(connection.pk, subscription.audience_id, "activation", 10)
    forward_pending(connection.pk)

    assert len(standin.segment_members(SITE, segment_id)) == 5


def test_a_dry_run_shows_the_segment_operations_and_the_identifier(connect, standin):
    import json
    from io import StringIO

    from django.core.management import call_command

    connection, segment_id = connect(identify_by="email")
    apply_changes([person("c1", "ada@example.com", {1: True}), person("c2", "bo@example.com", {1: False})])
    out = StringIO()

    call_command("resync", "--connection", connection.name, "--dry-run", stdout=out, stderr=StringIO())

    lines = sorted((json.loads(line) for line in out.getvalue().splitlines()), key=lambda line: line["customer_id"])
    assert [(line["customer_id"], line["identified_by"], line["segments"]) for line in lines] == [
        ("ada@example.com", "email", [{"segment_id": segment_id, "action": "add"}]),
        ("bo@example.com", "email", [{"segment_id": segment_id, "action": "remove"}]),
    ]
    assert standin.requests(SITE) == []  # nothing sent
