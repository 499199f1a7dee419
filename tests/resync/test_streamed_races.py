"""A change and an erasure that race a streamed page, over real workers (issue 29).

The stand-in holds every v2 batch 300 ms before applying it, so a page stays in flight long enough
for the test to change (or erase) one of its people meanwhile. The rules under test
(connections/services/outbox/inflight.py): the change's request starts only once the page's
request was answered, so Customer.io applies the newer state last; the erasure's DELETE goes only
after the page too, so Customer.io's last word on the person is the erasure. BACKFILL_INLINE_MAX is
3 and a page 5 people (in the workers and here) so that 40 members make eight pages.
"""

import time

import pytest

from cio_standin import Faults
from connections.models import Audience, ErasureCall, Forward, Profile, ResyncRun
from connections.services.erasure import local as erasure
from connections.services.ingest import memberships, subscriptions
from tests.support.factories import MembershipFactory, ProfileFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.timeout(180), pytest.mark.django_db(transaction=True)]
SITE = "site-us"
SMALL = {"BACKFILL_INLINE_MAX": "3", "FORWARD_BATCH_SIZE": "5"}


@pytest.fixture
def audience_of_40(settings, standin, workspace_connection):
    settings.BACKFILL_INLINE_MAX, settings.FORWARD_BATCH_SIZE = 3, 5
    purge_broker()
    audience = Audience.objects.create(audience_id=77, name="Big")
    for n in range(40):
        MembershipFactory(audience=audience, profile=ProfileFactory(customer_id=f"m{n:02d}", email=f"m{n}@x.io"))
    connection = workspace_connection(SITE, transport="v2_batch", one_attribute_per_audience=True, erasure="delete")
    standin.set_faults(Faults(delay_ms=300, path_contains="/api/v2/batch"))
    return audience, connection


def a_person_in_flight() -> Profile:
    """The last person of the page in flight, once a page is in flight (not the first: it is mid-run)."""
    found: list[Profile] = []

    def in_flight() -> bool:
        run = ResyncRun.objects.first()
        if run is None or run.inflight_to is None or run.last_profile_id == 0:
            return False
        found[:] = [Profile.objects.get(pk=run.inflight_to)]
        return True

    wait_until(in_flight, timeout=60, interval=0.01, message="a page of the run to be in flight")
    return found[0]


def still_in_flight(person: Profile) -> bool:
    return ResyncRun.objects.get().last_profile_id < person.pk


def page_request(standin, customer_id: str):
    return next(r for r in standin.requests(SITE) if r.path == "/api/v2/batch" and customer_id in r.identifiers)


def test_a_change_to_a_person_in_a_page_in_flight_is_sent_after_the_page(standin, audience_of_40):
    audience, connection = audience_of_40
    changed = []
    with running_workers(standin.url, **SMALL):
        subscriptions.subscribe(audience, connection)  # 40 > 3: a run, streamed by a worker
        raced = False
        while not raced and len(changed) < 5:  # the page may be answered before the change commits: next page
            person = a_person_in_flight()
            change = memberships.ProfileChange(
                profile=memberships.ProfileInput(customer_id=person.customer_id), memberships={77: False}
            )
            memberships.apply_changes([change])
            changed.append(person.customer_id)
            raced = still_in_flight(person)
            if not raced:
                time.sleep(0.4)
        assert raced, "no change was committed while its page was in flight"
        try:
            wait_until(
                lambda: ResyncRun.objects.get().status == "done" and not Forward.objects.exists(),
                timeout=60,
                message="the run and the change to be sent",
            )
        except AssertionError:
            run = ResyncRun.objects.values().get()
            rows = list(Forward.objects.values())
            raise AssertionError(f"run={run} outbox={rows}") from None

    people = standin.people(SITE)
    assert people[person.customer_id]["In Big"] == "false"
    assert {cid for cid, attributes in people.items() if attributes["In Big"] == "false"} == set(changed)
    assert len(people) == 40
    page = page_request(standin, person.customer_id)
    later = [r for r in standin.requests(SITE) if person.customer_id in r.identifiers and r.index > page.index]
    assert later, "the change was never sent"
    assert all(r.monotonic >= page.answered for r in later), "the change's request started before the page was answered"


def test_an_erasure_of_a_person_in_a_page_in_flight_goes_after_the_page(standin, audience_of_40):
    audience, connection = audience_of_40
    with running_workers(standin.url, FORWARD_CLAIM_SECONDS="4", **SMALL):
        subscriptions.subscribe(audience, connection)
        person = a_person_in_flight()
        erasure.erase(erasure.PersonQuery(customer_id=person.customer_id), source="admin", requested_by="dpo")
        wait_until(
            lambda: ErasureCall.objects.filter(status="succeeded").exists()
            and ResyncRun.objects.get().status == "done",
            timeout=120,
            message="the run and the erasure call to finish",
        )

    requests = [r for r in standin.requests(SITE) if person.customer_id in r.identifiers]
    assert requests[-1].method == "DELETE", [(r.method, r.path) for r in requests]
    assert person.customer_id not in standin.people(SITE)
    page = page_request(standin, person.customer_id) if requests[0].method == "POST" else None
    if page is not None:  # the page named them before the erasure: its answer came before the DELETE
        assert requests[-1].monotonic >= page.answered
