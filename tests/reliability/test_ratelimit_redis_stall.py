"""The rate limiter's Redis stops answering while a real worker sends.

A paused process (SIGSTOP) is what a hung or partitioned Redis looks like to a client: the
connection stays open and the kernel accepts the request, but no answer ever comes. The
worker must give up on it within seconds instead of hanging forever, give its rows back
(`forwarding.forward_pending`'s except-branch), lose nothing, and once Redis answers again
beat's sweep (at its default interval: this test does not call the sweep) delivers everything.
"""

import time
from collections import Counter

import pytest
import redis

from connections.models import Forward
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.support.factories import AudienceFactory
from tests.support.redis_server import PrivateRedis
from tests.support.workers import purge_broker, running_beat, running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability, pytest.mark.timeout(300)]


@pytest.fixture
def limiter_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def limiter_calls(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def test_a_limiter_redis_that_stops_answering_holds_no_worker_and_loses_nothing(
    limiter_redis, standin, workspace_connection, settings
):
    purge_broker()
    connection = workspace_connection("site-us", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=123, name="New Users"), connection)
    during = [f"during-{i}" for i in range(200)]
    env = {"RATE_LIMIT_REDIS_URL": limiter_redis.url}

    with running_workers(standin.url, **env) as (worker,), running_beat(standin.url, **env):
        apply_changes([ProfileChange(ProfileInput(customer_id="before"), {123: True})])
        wait_until(lambda: "before" in standin.people("site-us"), message="the first change to be delivered")
        assert limiter_calls(limiter_redis.url) > 0, "the worker's limiter must use this Redis"

        limiter_redis.pause()
        apply_changes([ProfileChange(ProfileInput(customer_id=c), {123: True}) for c in during])
        wait_until(
            lambda: Forward.objects.exclude(claim_token="").exists(),
            timeout=20,
            interval=0.05,
            message="a worker to claim the changes and wait for the rate limiter",
        )
        claimed_at = time.monotonic()
        wait_until(
            lambda: Forward.objects.count() == len(during) and not Forward.objects.exclude(claim_token="").exists(),
            timeout=60,
            interval=0.05,
            message="the worker to give its rows back instead of hanging on Redis",
        )
        held = time.monotonic() - claimed_at
        assert held < settings.RATE_LIMIT_REDIS_TIMEOUT + 1.5, f"the rows were held {held:.1f}s"
        assert worker.poll() is None, "the worker process is still running"
        assert not set(during) & set(standin.people("site-us"))

        limiter_redis.resume()
        resumed_at = time.monotonic()
        wait_until(
            lambda: not Forward.objects.exists(),
            timeout=150,
            interval=1,
            message="beat's sweep to deliver everything once Redis answers again",
        )
        delivered_after = time.monotonic() - resumed_at

    answered = [request for request in standin.requests("site-us") if request.status == 200]
    sent = Counter(identifier for request in answered for identifier in request.identifiers)
    assert set(during) <= set(sent)
    assert max(sent[c] for c in during) == 1, "nothing was sent twice"
    print(f"\nclaimed rows given back after {held:.1f}s of a Redis that does not answer; "
          f"delivered {delivered_after:.1f}s after it answered again")
