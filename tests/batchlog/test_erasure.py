"""Erasing a person takes them out of every batch request that named them, and only them."""

import json

import pytest

from connections.customerio.client import Outcome
from connections.models import BatchDelivery
from connections.models.batch_delivery import ERASED_ID
from connections.services.erasure import local as erasure
from connections.services.forwarding.batch_log import batch_entries_for_profile, complete_batch
from tests.support.batch_log import identify_body, log_identify, log_segment_add, result
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    """Ann, Bea (to be erased) and Cy in an identify request partly rejected, Bea and Cy in a segment request."""
    ann, bea, cy = (
        ProfileFactory(customer_id=f"{name}-7731", email=f"{name}@example.org", first_name=name.title())
        for name in ("ann", "bea", "cy")
    )
    connection = ConnectionFactory()
    identify = log_identify(connection, [ann, bea, cy])
    complete_batch(
        identify,
        result(Outcome.SUCCEEDED, 207, response=f'{{"errors":[{{"batch_index":1,"reason":"{bea.email} bounced"}}]}}'),
        {1: f"{bea.email} bounced", 2: "cy: attribute too long"},
    )
    segment = log_segment_add(connection, [bea, cy])
    complete_batch(segment, result(Outcome.RETRY, 503, error=f"Customer.io named {bea.customer_id}."), {})
    alone = log_identify(connection, [ann])
    return {"ann": ann, "bea": bea, "cy": cy, "identify": identify.id, "segment": segment.id, "alone": alone.id}


def everything_stored(row: BatchDelivery) -> str:
    return " ".join(
        [bytes(row.body).decode(), json.dumps(row.item_errors), row.response, row.error, json.dumps(row.profile_ids)]
    )


def test_the_plan_counts_the_requests_that_name_them(sent):
    assert erasure.plan_erasure(erasure.PersonQuery.for_profile(sent["bea"])).batch_requests == 2


def test_no_request_holds_anything_of_the_erased_person(sent):
    bea = sent["bea"]
    erasure.erase(erasure.PersonQuery(customer_id=bea.customer_id), source="admin", requested_by="dpo")

    assert not BatchDelivery.objects.filter(profile_ids__has=bea.pk).exists()
    for row in BatchDelivery.objects.all():
        stored = everything_stored(row)
        assert bea.customer_id not in stored and bea.email not in stored and "Bea" not in stored
        assert bea.pk not in row.profile_ids


def test_the_others_of_each_request_keep_their_items_positions_and_errors(sent):
    ann, bea, cy = sent["ann"], sent["bea"], sent["cy"]
    erasure.erase(erasure.PersonQuery.for_profile(bea), source="admin", requested_by="dpo")

    identify = BatchDelivery.objects.get(pk=sent["identify"])
    assert identify.profile_ids == [ann.pk, ERASED_ID, cy.pk] and identify.people == 2
    ann_item, cy_item = json.loads(identify_body([ann, cy]))["batch"]
    assert json.loads(bytes(identify.body)) == {"batch": [ann_item, None, cy_item]}
    assert identify.item_errors == {"2": "cy: attribute too long"}  # Cy's error still at Cy's position
    assert identify.status == "partial"
    assert batch_entries_for_profile(cy.pk).entries[-1].item_error == "cy: attribute too long"

    segment = BatchDelivery.objects.get(pk=sent["segment"])
    assert segment.profile_ids == [ERASED_ID, cy.pk] and segment.people == 1
    assert json.loads(bytes(segment.body)) == {"ids": [None, cy.customer_id]}
    assert segment.error == "Customer.io named [erased]. Will retry."

    alone = BatchDelivery.objects.get(pk=sent["alone"])
    assert alone.profile_ids == [ann.pk] and json.loads(bytes(alone.body))["batch"][0]["identifiers"] == {
        "id": ann.customer_id
    }


def test_an_answer_arriving_after_the_erasure_keeps_the_others_errors_and_not_theirs():
    ann, bea, cy = ProfileFactory.create_batch(3)
    in_flight = log_identify(ConnectionFactory(), [ann, bea, cy])  # logged pending, being sent
    erasure.erase(erasure.PersonQuery.for_profile(bea), source="admin", requested_by="dpo")

    complete_batch(in_flight, result(Outcome.SUCCEEDED, 207), {1: f"{bea.email} bounced", 2: "cy: attribute too long"})

    row = BatchDelivery.objects.get(pk=in_flight.id)
    assert row.status == "partial"
    assert row.item_errors == {"2": "cy: attribute too long"}
    assert bea.email not in everything_stored(row)
