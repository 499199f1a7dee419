"""The Celery time limit on the deployed (prefork) pool: a forwarding task stuck past its soft
limit gives its claimed rows back at once, the worker stays up, and nothing is lost.

The limit is shortened here (3 s instead of 300 s) so that a test can reach it; every other
worker test runs under the default limits, which must never cut normal work (tests/README.md).
"""

import time
from collections import Counter

import pytest

from cio_standin import Faults
from connections import tasks
from connections.models import Delivery, Forward
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

# Registered in this (sending) process too, as in a web process that imports the tasks: the
# limits that apply must still be the worker's, not copied from here into each message.
assert tasks.forward_connection.name in tasks.forward_connection.app.tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability, pytest.mark.timeout(180)]

SOFT_LIMIT = 3
SHORT_LIMITS = {"CELERY_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT), "CELERY_TASK_TIME_LIMIT": "20"}


def test_a_task_past_its_soft_time_limit_gives_its_rows_back_and_loses_nothing(standin, workspace_connection):
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="New Users"), connection)
    customers = [f"slow-{i}" for i in range(20)]
    # Customer.io answers after 15 s: the request outlives the soft limit (and the client waits for it).
    standin.set_faults(Faults(delay_ms=15_000, delay_share=1.0))

    with running_workers(standin.url, pool="prefork", CUSTOMERIO_TIMEOUT="30", **SHORT_LIMITS) as (worker,):
        apply_changes([ProfileChange(ProfileInput(customer_id=c), {123: True}) for c in customers])
        wait_until(
            lambda: Delivery.objects.filter(status="pending").exists(),
            timeout=30,
            interval=0.05,
            message="a request in flight",
        )
        in_flight_at = time.monotonic()
        wait_until(
            lambda: Forward.objects.count() == len(customers) and not Forward.objects.exclude(claim_token="").exists(),
            timeout=30,
            interval=0.05,
            message="the interrupted task to give its rows back",
        )
        held = time.monotonic() - in_flight_at
        assert held < SOFT_LIMIT + 3, f"the rows were held {held:.1f}s"
        assert worker.poll() is None, "the worker survives"
        # The time limit stopped the task; it was not taken for a Customer.io failure and retried
        # with a backoff: the rows are back untouched, due at once, their attempt not counted.
        assert set(Forward.objects.values_list("attempts", flat=True)) == {0}
        assert not Delivery.objects.filter(error__contains="TimeLimit").exists()

        standin.clear_faults()
        # A new change wakes a worker, which sends everything due, including the rows given back.
        apply_changes([ProfileChange(ProfileInput(customer_id="later"), {123: True})])
        wait_until(lambda: not Forward.objects.exists(), timeout=60, message="everything to be delivered")

    answered = [r for r in standin.requests("site-us") if r.status == 200]
    sent = Counter(identifier for request in answered for identifier in request.identifiers)
    assert set(customers) | {"later"} <= set(sent)
    print(f"\nrows given back {held:.1f}s after the request started (soft limit {SOFT_LIMIT}s)")
