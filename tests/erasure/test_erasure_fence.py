"""An erasure outlasts a claim in flight: Customer.io's last word on the person is the erasure call.

Issue 26, defect 2: a worker had planned (and logged) an identify of the person when they were
erased; the DELETE went out at once and the identify, answered after it, re-created them.
"""

import pytest

from cio_standin import Faults
from connections.models import Audience, Delivery, ErasureCall, Forward
from connections.services.erasure import calls as erasure_calls
from connections.services.erasure import local as erasure
from connections.services.forwarding import claims
from connections.services.ingest import memberships, subscriptions
from tests.support.workers import purge_broker, running_workers, wait_until

VICTIM = "victim-9"


def _join(connection, customer_id: str, audience_id: int = 91) -> None:
    audience = Audience.objects.get_or_create(audience_id=audience_id, defaults={"name": "Newsletter"})[0]
    subscriptions.subscribe(audience, connection)
    person = memberships.ProfileInput(
        customer_id=customer_id, email=f"{customer_id}@example.org", first_name="Vic", last_name="Tim"
    )
    memberships.apply_changes([memberships.ProfileChange(profile=person, memberships={audience_id: True})])


def _naming(requests, customer_id: str) -> list[int]:
    """Positions, in the order Customer.io applied them, of the requests that name the person."""
    return [n for n, r in enumerate(requests) if customer_id in r.identifiers]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_an_identify_in_flight_reaches_customerio_before_the_delete(standin, workspace_connection, settings):
    """The worker's lease is shortened to 6 s (FORWARD_CLAIM_SECONDS) so that the wait is short;
    `test_the_call_waits_for_the_default_lease_of_a_live_claim` below holds the default lease."""
    settings.CUSTOMERIO_TIMEOUT = 5.0  # as the workers': the stand-in holds each batch 2 s
    purge_broker()
    connection = workspace_connection("site-us", transport="v2_batch", erasure="delete")
    standin.set_faults(Faults(delay_ms=2000, path_contains="/api/v2/batch"))

    with running_workers(standin.url, FORWARD_CLAIM_SECONDS="6", CUSTOMERIO_TIMEOUT="5"):
        _join(connection, VICTIM)
        # Logged pending: the worker planned the identify and its request is on its way.
        wait_until(
            lambda: Delivery.objects.filter(customer_id=VICTIM, status="pending").exists(),
            message="the worker to send the identify",
        )
        result = erasure.erase(erasure.PersonQuery(customer_id=VICTIM), source="admin", requested_by="dpo")
        assert result.record is not None
        wait_until(
            lambda: ErasureCall.objects.filter(status="succeeded").exists(),
            timeout=60,
            message="the worker to delete the person",
        )

    requests = standin.requests("site-us")
    deletes = [n for n in _naming(requests, VICTIM) if requests[n].method == "DELETE"]
    assert deletes, "no DELETE reached the stand-in"
    assert max(_naming(requests, VICTIM)) == deletes[-1], [(r.method, r.path) for r in requests]
    assert VICTIM not in standin.people("site-us")


@pytest.mark.django_db(transaction=True)
def test_the_call_waits_for_the_default_lease_of_a_live_claim(standin, workspace_connection, settings):
    """The default lease (45 s) and request timeout (10 s): a claim taken just now holds the call back."""
    settings.CUSTOMERIO_TIMEOUT = 10.0
    connection = workspace_connection("site-us", transport="v2_batch", erasure="delete")
    _join(connection, VICTIM)
    token, rows = claims.claim(connection.pk, 10)
    assert rows, "the person's forward was not claimed"
    lease = Forward.objects.filter(claim_token=token).values_list("claimed_until", flat=True).first()

    erasure.erase(erasure.PersonQuery(customer_id=VICTIM), source="admin", requested_by="dpo")

    [call] = ErasureCall.objects.all()
    assert (call.due_at - lease).total_seconds() == pytest.approx(10.0)
    assert (call.due_at - call.record.created_at).total_seconds() > 45 + 10 - 5
    assert erasure_calls.send_due(connection.pk) == 0
    assert not [r for r in standin.requests("site-us") if r.method == "DELETE"]
    assert call.status == ErasureCall.Status.PENDING
