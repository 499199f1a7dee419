"""A person erased while a worker holds them in a claim is dropped; the rest of the claim goes on.

Issue 26, defect 8: an erasure between a worker's plan and its log insert made the Delivery
insert fail (the profile it names was gone), so the whole claim was given back and sent again,
and an erasure just before the manual-segment step left the identify's log rows pending.
The erasure runs at those two moments exactly, from hooks on the worker's steps (the lease's
renewal is the last step before the log insert; an erasure before it already dropped the person).
"""

import pytest

from connections.models import Delivery
from connections.services.erasure import local as erasure
from connections.services.forwarding import claims
from connections.services.forwarding import worker as forwarding
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.ingest.segments import set_segment_id
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the log's foreign key is checked at commit, as deployed

SITE = "site-us"
OTHERS = ("ann-1", "bob-2")
VICTIM = "victim-9"


def _erase_victim() -> None:
    erasure.erase(erasure.PersonQuery(customer_id=VICTIM), source="admin", requested_by="dpo")


@pytest.fixture
def claim_of_three(standin, workspace_connection):
    def make(transport: str):
        connection = workspace_connection(SITE, transport=transport)
        segment_id = standin.create_segment(SITE, "VIPs")
        sub, _ = subscriptions.subscribe(AudienceFactory(audience_id=1, name="A1"), connection)
        set_segment_id(sub, segment_id)
        apply_changes(
            [ProfileChange(ProfileInput(customer_id=c, first_name="Pat"), {1: True}) for c in (*OTHERS, VICTIM)]
        )
        return connection, segment_id

    return make


def _requests_naming(standin, customer_id: str, kind: str) -> int:
    def is_kind(path: str) -> bool:
        return "/segments/" in path if kind == "segment" else "/segments/" not in path

    return sum(1 for r in standin.requests(SITE) if customer_id in r.identifiers and is_kind(r.path))


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
@pytest.mark.parametrize("moment", ["before_log", "before_segments"])
def test_the_others_are_sent_once_and_no_log_row_stays_pending(claim_of_three, standin, monkeypatch, transport, moment):
    connection, segment_id = claim_of_three(transport)
    if moment == "before_log":
        real_renew = claims.renew

        def renew_then_erase(*args, **kwargs):  # the last step before the log insert
            ours = real_renew(*args, **kwargs)
            _erase_victim()
            return ours

        monkeypatch.setattr(claims, "renew", renew_then_erase)
    else:
        real_send = forwarding.send_segment_operations

        def erase_then_send(*args, **kwargs):
            _erase_victim()
            return real_send(*args, **kwargs)

        monkeypatch.setattr(forwarding, "send_segment_operations", erase_then_send)

    forwarding.forward_pending(connection.pk)
    monkeypatch.undo()
    forwarding.forward_pending(connection.pk)  # anything given back would be sent now

    for customer_id in OTHERS:
        assert _requests_naming(standin, customer_id, "identify") == 1, customer_id
        assert _requests_naming(standin, customer_id, "segment") == 1, customer_id
    assert _requests_naming(standin, VICTIM, "segment") == 0
    if moment == "before_log":
        assert _requests_naming(standin, VICTIM, "identify") == 0
    assert standin.segment_members(SITE, segment_id) == set(OTHERS)
    assert not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()
    assert not Delivery.objects.filter(customer_id=VICTIM).exists()
    succeeded = sorted(Delivery.objects.filter(status="succeeded").values_list("customer_id", flat=True))
    # Identify and segment request of each other person; the victim's identify, sent before the
    # erasure, is logged with its identifier scrubbed.
    assert succeeded == sorted(OTHERS * 2 + (("",) if moment == "before_segments" else ()))


def erase_right_after_the_plan(monkeypatch, query: erasure.PersonQuery) -> None:
    """The worker's plan is made, then the person is erased, before anything of them is logged."""
    real_plan = forwarding.plan

    def plan_then_erase(*args, **kwargs):
        planned = real_plan(*args, **kwargs)
        erasure.erase(query, source="admin", requested_by="dpo")
        return planned

    monkeypatch.setattr(forwarding, "plan", plan_then_erase)


def test_a_person_skipped_by_the_plan_and_erased_before_the_log_is_logged_naming_nobody(claim_of_three, monkeypatch):
    """The skipped and cancelled are logged right after the plan: an erasure there must not fail the claim."""
    connection, _ = claim_of_three("v2_batch")
    apply_changes([ProfileChange(ProfileInput(email="no.id@example.org"), {1: True})])  # no customer ID: skipped
    erase_right_after_the_plan(monkeypatch, erasure.PersonQuery(email="no.id@example.org"))

    report = forwarding.forward_pending(connection.pk)

    assert report.succeeded == 3 and report.skipped == 1
    [skipped] = Delivery.objects.filter(status=Delivery.Status.SKIPPED)
    assert skipped.profile_id is None and skipped.customer_id == "" and skipped.attributes == {}
    assert not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()


def test_a_person_failed_by_the_plan_and_erased_before_the_log_is_logged_naming_nobody(claim_of_three, monkeypatch):
    """A person the plan fails (an identifier over Customer.io's 150 bytes) has an identifier and attributes
    to log; erased right after the plan, the row keeps neither."""
    connection, _ = claim_of_three("v2_batch")
    too_long = "é" * 100  # 200 bytes in UTF-8, 100 characters in the database
    apply_changes([ProfileChange(ProfileInput(customer_id=too_long, first_name="Pat"), {1: True})])
    erase_right_after_the_plan(monkeypatch, erasure.PersonQuery(customer_id=too_long))

    report = forwarding.forward_pending(connection.pk)

    assert report.succeeded == 3 and report.failed == 1
    [failed] = Delivery.objects.filter(status=Delivery.Status.FAILED)
    assert failed.profile_id is None and failed.customer_id == "" and failed.attributes == {}
    assert not Delivery.objects.filter(customer_id=too_long).exists()
