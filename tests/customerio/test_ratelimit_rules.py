"""The rate limiter's rules on a fake clock: exact waits, the window's edge, one log per connection.

SPEC section 2: a connection never sends more than its rate limit in any one-second window
(the window is 1.05 s, see ratelimit.WINDOW_SECONDS). These tests pin the arithmetic without
waiting: `time.monotonic` and `time.sleep` of the limiter are replaced by a clock that only
moves when the code sleeps or the test says so. The Redis tests use the suite's Redis.
"""

import socket
import threading
import uuid

import pytest
import redis

from connections.customerio import ratelimit
from connections.customerio.ratelimit import WINDOW_SECONDS, LocalRateLimiter, RedisRateLimiter
from tests.customerio.test_ratelimit import redis_is_up


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(ratelimit.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(ratelimit.time, "sleep", fake.sleep)
    return fake


def test_the_rate_is_allowed_at_once_and_the_next_request_waits_for_the_oldest_to_leave_the_window(clock):
    limiter = LocalRateLimiter()
    assert [limiter.try_acquire("c", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 0.25
    assert limiter.try_acquire("c", 3) == pytest.approx(WINDOW_SECONDS - 0.25)
    clock.now += WINDOW_SECONDS - 0.25  # exactly one window after the first three
    assert limiter.try_acquire("c", 3) == 0.0, "a request one full window old no longer counts"


def test_a_refused_request_is_not_counted(clock):
    limiter = LocalRateLimiter()
    assert limiter.try_acquire("c", 1) == 0.0
    clock.now += 0.5
    for _ in range(5):
        assert limiter.try_acquire("c", 1) == pytest.approx(WINDOW_SECONDS - 0.5)
    clock.now += WINDOW_SECONDS - 0.5
    assert limiter.try_acquire("c", 1) == 0.0


def test_requests_leave_the_window_one_by_one(clock):
    limiter = LocalRateLimiter()
    limiter.try_acquire("c", 2)
    clock.now += 0.5
    limiter.try_acquire("c", 2)
    clock.now = 1000.0 + WINDOW_SECONDS  # the first has left, the second has not
    assert limiter.try_acquire("c", 2) == 0.0
    assert limiter.try_acquire("c", 2) == pytest.approx(0.5)


def test_acquire_sleeps_exactly_the_waits_it_is_told_and_returns_their_sum(clock):
    limiter = LocalRateLimiter()
    assert ratelimit.acquire(7, 2, limiter) == 0.0
    assert ratelimit.acquire(7, 2, limiter) == 0.0
    assert clock.slept == []
    waited = ratelimit.acquire(7, 2, limiter)
    assert waited == pytest.approx(WINDOW_SECONDS)
    assert clock.slept == [pytest.approx(WINDOW_SECONDS)]


def test_each_connection_has_its_own_limit(clock):
    limiter = LocalRateLimiter()
    ratelimit.acquire(1, 1, limiter)
    assert ratelimit.acquire(2, 1, limiter) == 0.0, "connection 1's request does not count against connection 2"
    assert ratelimit.acquire(1, 1, limiter) == pytest.approx(WINDOW_SECONDS)


def test_acquire_uses_the_process_limiter_when_given_none(clock, monkeypatch):
    limiter = LocalRateLimiter()
    monkeypatch.setattr(ratelimit, "get_limiter", lambda: limiter)
    ratelimit.acquire(3, 1)
    assert limiter.try_acquire("connection:3", 1) > 0, "the request was counted in the process limiter"


@pytest.mark.parametrize(
    ("rate_limit_url", "broker_url", "expected"),
    [
        ("", "filesystem://", LocalRateLimiter),
        ("", "memory://", LocalRateLimiter),
        ("", "redis://127.0.0.1:6379/13", RedisRateLimiter),
        ("", "rediss://127.0.0.1:6379/13", RedisRateLimiter),
        ("redis://127.0.0.1:6379/13", "filesystem://", RedisRateLimiter),
        ("memory://", "redis://127.0.0.1:6379/13", LocalRateLimiter),
    ],
)
def test_workers_share_a_redis_log_whenever_a_redis_url_is_configured(settings, rate_limit_url, broker_url, expected):
    # SPEC: the limit holds across every worker, which share the broker's Redis (or RATE_LIMIT_REDIS_URL).
    settings.RATE_LIMIT_REDIS_URL = rate_limit_url
    settings.CELERY_BROKER_URL = broker_url
    ratelimit._limiter_for.cache_clear()
    try:
        assert type(ratelimit.get_limiter()) is expected
    finally:
        ratelimit._limiter_for.cache_clear()


needs_redis = pytest.mark.skipif(not redis_is_up(), reason="needs Redis on 127.0.0.1:6379")


@needs_redis
def test_the_redis_log_allows_the_rate_then_names_a_wait_within_one_window():
    limiter = RedisRateLimiter("redis://127.0.0.1:6379/13")
    key = uuid.uuid4().hex
    assert [limiter.try_acquire(key, 2) for _ in range(2)] == [0.0, 0.0]
    wait = limiter.try_acquire(key, 2)
    assert 0.9 < wait <= WINDOW_SECONDS, "the oldest request leaves the window a little under 1.05 s from now"
    assert limiter.try_acquire(uuid.uuid4().hex, 2) == 0.0, "another key has its own log"


@needs_redis
def test_the_redis_log_expires_once_its_requests_have_left_the_window():
    # Idle connections leave nothing behind in Redis: the key lives one window plus a second.
    limiter = RedisRateLimiter("redis://127.0.0.1:6379/13")
    key = uuid.uuid4().hex
    limiter.try_acquire(key, 5)
    ttl = limiter._redis.pttl(f"cioaudience:rate:{key}")
    assert round(WINDOW_SECONDS * 1000) < ttl <= round(WINDOW_SECONDS * 1000) + 1000


def test_a_redis_restarted_between_requests_costs_no_failed_request(settings):
    # The pooled socket of the first request is dead after the restart: one retry reconnects.
    from tests.support.redis_server import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        limiter = RedisRateLimiter(server.url)
        assert limiter.try_acquire("c", 10) == 0.0
        server.stop()
        server.start()
        assert limiter.try_acquire("c", 10) == 0.0
    finally:
        server.stop()


def test_the_redis_timeout_comes_from_the_settings_unless_given(settings):
    settings.RATE_LIMIT_REDIS_TIMEOUT = 0.7
    pool = RedisRateLimiter("redis://127.0.0.1:6379/13")._redis.connection_pool.connection_kwargs
    assert pool["socket_timeout"] == 0.7 and pool["socket_connect_timeout"] == 0.7
    given = RedisRateLimiter("redis://127.0.0.1:6379/13", timeout=0.3)._redis.connection_pool.connection_kwargs
    assert given["socket_timeout"] == 0.3 and given["socket_connect_timeout"] == 0.3


def test_a_wait_under_a_second_is_still_waited(clock):
    limiter = LocalRateLimiter()
    ratelimit.acquire(5, 1, limiter)
    clock.now += 0.5
    assert ratelimit.acquire(5, 1, limiter) == pytest.approx(WINDOW_SECONDS - 0.5)
    assert clock.slept == [pytest.approx(WINDOW_SECONDS - 0.5)]


def test_acquire_keeps_waiting_while_other_workers_take_the_freed_slots(clock):
    # Another worker sharing the log took the slot first: the limiter names a second wait.
    class Contested:
        answers = [0.3, 0.2, 0.0]

        def try_acquire(self, key, rate):
            return self.answers.pop(0)

    assert ratelimit.acquire(5, 1, Contested()) == pytest.approx(0.5)
    assert clock.slept == [0.3, 0.2]


class DroppingProxy:
    """A TCP proxy to the suite's Redis that drops the next `drops` connections carrying a script call.

    What a restarted Redis, a failover or a load balancer's idle timeout does to a pooled
    connection: the request is written, and the connection is gone before the answer.
    """

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/13"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 6379))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if from_client and b"EVALSHA" in chunk.upper() and self.drops > 0:
                    self.drops -= 1
                    break
                target.sendall(chunk)
        except OSError:
            pass  # the other direction closed the pair
        for s in (source, target):
            s.close()

    def close(self) -> None:
        self._listener.close()


@needs_redis
def test_a_connection_dropped_under_a_request_is_retried_once_on_a_new_one():
    proxy = DroppingProxy(drops=1)
    try:
        limiter = RedisRateLimiter(proxy.url)
        assert limiter.try_acquire(uuid.uuid4().hex, 10) == 0.0
        assert proxy.drops == 0, "the first connection was dropped under the request"
    finally:
        proxy.close()


@needs_redis
def test_a_redis_that_keeps_dropping_the_connection_fails_the_acquire_after_that_one_retry():
    # The error fails the forwarding task, which gives its rows back at once (beat's sweep resends them).
    proxy = DroppingProxy(drops=2)
    try:
        limiter = RedisRateLimiter(proxy.url)
        with pytest.raises(redis.ConnectionError):
            limiter.try_acquire(uuid.uuid4().hex, 10)
    finally:
        proxy.close()
