"""A broker outage: the Firehose endpoint keeps answering 2xx (the outbox is in the database),
and once the broker is back the sweep delivers everything.

The broker here is a Redis server of the test's own (on a free port), so stopping it cannot
disturb anything else running on this machine.
"""

import json
import time

import pytest

from cioaudience.celery import app
from connections.models import FirehoseMessage, Forward
from connections.services.ingest import subscriptions, tokens
from tests.support.factories import AudienceFactory
from tests.support.firehose import URL, membership_request, user_profile
from tests.support.redis_server import PrivateRedis
from tests.support.workers import running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability, pytest.mark.timeout(300)]


def use_broker(url: str, monkeypatch) -> None:
    """Point this process's Celery app at another broker (and drop its pooled connections).

    Celery reads CELERY_BROKER_URL from the environment before its configuration, so both change.
    """
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    app._after_fork()  # forgets pooled connections, as after a fork


@pytest.fixture
def redis_broker(settings, monkeypatch):
    redis = PrivateRedis()
    redis.start()
    original = app.conf.broker_url
    settings.CELERY_BROKER_URL = redis.url
    use_broker(redis.url, monkeypatch)
    yield redis
    redis.stop()
    monkeypatch.undo()
    app.conf.broker_url = original
    app._after_fork()


@pytest.mark.parametrize("apply_in", ["request", "worker"])
def test_the_endpoint_keeps_accepting_during_a_broker_outage_and_nothing_is_lost(
    apply_in, redis_broker, standin, workspace_connection, client, settings
):
    settings.FIREHOSE_APPLY = apply_in
    connection = workspace_connection("site-us", rate_limit=10_000)
    subscriptions.subscribe(AudienceFactory(audience_id=456, name="Example Audience Name"), connection)
    _, token = tokens.create_token("mparticle")

    def post(customer_ids):
        body = membership_request(
            *[
                user_profile(
                    customer_id=c,
                    audiences=[{"audience_id": 456, "audience_name": "Example Audience Name", "action": "add"}],
                )
                for c in customer_ids
            ],
            connection_key=connection.connection_key,
        )
        return client.post(URL, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")

    env = {"CELERY_BROKER_URL": redis_broker.url}
    with running_workers(standin.url, **env):
        assert post(["before"]).status_code == 200
        wait_until(lambda: "before" in standin.people("site-us"), message="the first change to be delivered")

    # A worker that loses the broker with a message unacknowledged can exit (kombu 5.7's Redis
    # transport fails in restore_unacked); a supervisor restarts it (README, Production). What is
    # shown here is the web side and the outbox: nothing depends on a worker outliving the outage.
    redis_broker.stop()
    during = [f"during-{i}" for i in range(50)]
    for start in range(0, 50, 10):
        started = time.monotonic()
        response = post(during[start : start + 10])
        assert response.status_code == 200, response.content
        assert time.monotonic() - started < 2, "the endpoint must not hang on the broker"
    if apply_in == "request":
        assert Forward.objects.count() == 50
    else:  # stored, for a worker to apply once one can be woken
        assert FirehoseMessage.objects.filter(pending=True).count() == 5
    time.sleep(1)
    assert not set(during) & set(standin.people("site-us"))

    redis_broker.start()
    app._after_fork()
    with running_workers(standin.url, beat=True, **env):
        # Beat's sweep (every 30 s) finds what was accepted during the outage: nothing was enqueued then.
        wait_until(
            lambda: not Forward.objects.exists() and not FirehoseMessage.objects.filter(pending=True).exists(),
            timeout=120,
            interval=1,
            message="the sweep to deliver what was accepted during the outage",
        )

    assert set(during) <= set(standin.people("site-us"))
