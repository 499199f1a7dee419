"""Customer.io outages with real workers (SPEC section 4): the breaker, the pause, nothing lost.

Timings are shortened by settings so that an outage longer than the seed's old give-up window
(8 attempts) fits in a test; bench/outage.py runs a 7-minute outage with the defaults, and
`test_at_a_high_rate_the_breaker_opens_on_the_count_before_the_backlog_is_sent` the default breaker.
"""

import itertools
import time

import pytest

from cio_standin import Faults
from connections.models import Connection, Delivery, Forward
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.reliability.test_faults import expected_state
from tests.support.factories import AudienceFactory
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability, pytest.mark.timeout(600)]

AUDIENCES = [11, 22, 33]
# Breaker and backoff shortened; with a 0.2-2 s row backoff the seed gave up after about 9 s.
QUICK = {
    "BREAKER_MIN_SECONDS": "2",
    "BREAKER_PROBE_BASE": "0.5",
    "BREAKER_PROBE_MAX": "2",
    "CUSTOMERIO_TIMEOUT": "1",
}
OUTAGE_SECONDS = 20


def make_connection(workspace_connection, transport: str) -> Connection:
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000, transport=transport)
    for audience_id in AUDIENCES:
        subscriptions.subscribe(AudienceFactory(audience_id=audience_id, name=f"A{audience_id}"), connection)
    return connection


def round_of_changes(profiles: list[str], version: int) -> None:
    apply_changes(
        [
            ProfileChange(
                ProfileInput(customer_id=c, first_name=f"v{version}"),
                {AUDIENCES[version % 3]: (i + version) % 2 == 0, AUDIENCES[(version + 1) % 3]: True},
            )
            for i, c in enumerate(profiles)
        ]
    )


def assert_final_state(connection, standin) -> None:
    people = standin.people("site-us")
    expected = expected_state(connection)
    wrong = {c for c, e in expected.items() if {k: people.get(c, {}).get(k) for k in e} != e}
    assert not wrong, f"{len(wrong)} profiles not in their final state, e.g. {sorted(wrong)[:3]}"


@pytest.mark.parametrize(("transport", "mode"), [("v1", "503"), ("v2_batch", "hang"), ("v1", "refuse")])
def test_an_outage_longer_than_the_old_give_up_window_loses_nothing(
    standin, workspace_connection, transport, mode
):
    connection = make_connection(workspace_connection, transport)
    profiles = [f"o{i}" for i in range(150)]
    round_of_changes(profiles, 1)

    with running_workers(standin.url, count=2, concurrency=2, beat=True, **QUICK):
        wait_until(lambda: not Forward.objects.exists(), timeout=60, message="the first round delivered")
        outage_started = time.time()
        standin.start_outage(mode, OUTAGE_SECONDS)
        for version in range(2, 8):  # six more changes per profile during the outage
            round_of_changes(profiles, version)
            # The backlog stays bounded: one waiting row per profile and audience (and one for identity)
            # at most, plus the rows a worker holds while it sends them, however many changes arrive.
            assert Forward.objects.filter(claim_token="").count() <= len(profiles) * (len(AUDIENCES) + 1)
            assert Forward.objects.count() <= 2 * len(profiles) * (len(AUDIENCES) + 1)
            time.sleep(1.5)
        opened = wait_until(
            lambda: Connection.objects.filter(pk=connection.pk, state="backing_off").values_list(
                "state_changed_at", flat=True
            ).first(),
            timeout=OUTAGE_SECONDS,
            message="the breaker to open",
        )
        wait_until(lambda: time.time() > outage_started + OUTAGE_SECONDS, timeout=OUTAGE_SECONDS + 5)
        wait_until(lambda: not Forward.objects.exists(), timeout=120, message="the backlog to drain after the outage")

    assert_final_state(connection, standin)
    connection.refresh_from_db()
    assert connection.state == Connection.State.ACTIVE
    assert not Delivery.objects.filter(status=Delivery.Status.FAILED).exists(), "a transient failure was final"
    assert Delivery.objects.filter(status=Delivery.Status.RETRYING).exists()
    if mode != "refuse":  # refused connections never reach the stand-in to be counted
        after_open = [
            r for r in standin.requests("site-us")
            if r.fault == f"outage-{mode}" and r.wall_time > opened.timestamp() + 0.5
        ]
        # Once open, one probe at a time, at least BREAKER_PROBE_BASE/2 = 0.25 s apart and growing:
        # far fewer than the 150 profiles x 6 rounds the workers would otherwise have sent.
        assert 1 <= len(after_open) <= OUTAGE_SECONDS / 0.25
        starts = sorted(r.wall_time for r in after_open)
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(starts)), "probes overlapped"
        print(f"\n{transport}/{mode}: requests while open {len(after_open)}, opened after "
              f"{opened.timestamp() - outage_started:.1f} s")


def test_a_429_with_retry_after_pauses_every_worker_of_the_connection(standin, workspace_connection):
    connection = make_connection(workspace_connection, "v1")
    Connection.objects.filter(pk=connection.pk).update(rate_limit=40)
    profiles = [f"r{i}" for i in range(400)]
    apply_changes([ProfileChange(ProfileInput(customer_id=c, first_name="v1"), {11: True}) for c in profiles])

    with running_workers(standin.url, count=2, concurrency=2, beat=True):
        wait_until(lambda: len(standin.requests("site-us")) > 40, message="both workers sending")
        standin.set_faults(Faults(share=1.0, statuses=[429], retry_after=3))
        first_429 = wait_until(
            lambda: next((r for r in standin.requests("site-us") if r.status == 429), None), message="a 429"
        )
        standin.clear_faults()
        wait_until(lambda: not Forward.objects.exists(), timeout=120, message="everything sent after the pause")

    assert_final_state(connection, standin)
    # A worker notices the pause before its next group of requests (v1: 8 at most, under a second
    # at this rate); from then on nobody sends until Retry-After has passed.
    quiet = [
        r for r in standin.requests("site-us")
        if first_429.wall_time + 1.5 < r.wall_time < first_429.wall_time + 2.9
    ]
    assert quiet == [], f"{len(quiet)} requests reached Customer.io while it had asked every sender to wait"
    resumed = [r for r in standin.requests("site-us") if r.wall_time > first_429.wall_time + 3]
    assert resumed, "sending resumed after Retry-After"
    assert not Delivery.objects.filter(status=Delivery.Status.FAILED).exists()


def test_at_a_high_rate_the_breaker_opens_on_the_count_before_the_backlog_is_sent(
    standin, workspace_connection, settings
):
    """The default breaker (20 failures in a row, or 5 over 10 s; probes from 5 s): a v1 backlog of
    600 profiles, sent as fast as two workers can, meets an outage from its first request.

    With the 10 s rule alone the workers sent the whole backlog, again and again, before it opened.
    """
    assert (settings.BREAKER_MAX_FAILURES, settings.BREAKER_MIN_SECONDS, settings.BREAKER_PROBE_BASE) == (20, 10, 5)
    connection = make_connection(workspace_connection, "v1")
    profiles = [f"h{i}" for i in range(600)]
    round_of_changes(profiles, 1)
    standin.start_outage("503", 60)

    with running_workers(standin.url, count=2, concurrency=2, beat=True):
        opened = wait_until(
            lambda: Connection.objects.filter(pk=connection.pk, state="backing_off").values_list(
                "state_changed_at", flat=True
            ).first(),
            timeout=60,
            message="the breaker to open",
        )
        # The first probe goes out 2.5-5 s after the breaker opened: until then, only the requests
        # already in flight when it opened may still arrive.
        time.sleep(2)
        failed = sorted(r.wall_time for r in standin.requests("site-us") if r.fault == "outage-503")
        standin.end_outage()
        wait_until(lambda: not Forward.objects.exists(), timeout=120, message="the backlog to drain after the outage")

    assert_final_state(connection, standin)
    assert not Delivery.objects.filter(status=Delivery.Status.FAILED).exists(), "a transient failure was final"
    print(f"\nopened {opened.timestamp() - failed[0]:.2f} s after the first failure; {len(failed)} requests sent")
    assert opened.timestamp() - failed[0] < settings.BREAKER_MIN_SECONDS / 2, "the count opened it, not the time"
    # 20 to open it, plus what the other worker processes (2 x 2, 8 v1 requests each) had in flight.
    assert 20 <= len(failed) <= 20 + 4 * 8, f"{len(failed)} requests sent into the outage, not a few dozen"
