"""The per-connection rate limiter: no one-second window above the rate, shared across workers."""

import socket
import threading
import time
import uuid

import pytest
import redis

from connections.customerio import ratelimit
from connections.customerio.ratelimit import LocalRateLimiter, RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


def busiest_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    busiest, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def run_senders(limiter, rate: int, senders: int, requests_each: int) -> list[float]:
    key = uuid.uuid4().int % 10**9
    times: list[float] = []
    lock = threading.Lock()

    def send() -> None:
        for _ in range(requests_each):
            ratelimit.acquire(key, rate, limiter)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def test_the_local_limiter_keeps_every_one_second_window_under_the_rate():
    times = run_senders(LocalRateLimiter(), rate=20, senders=3, requests_each=20)
    assert busiest_window(times) <= 20
    assert times[-1] - times[0] < 3.5, "it must not be much slower than the rate allows"


def redis_is_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not redis_is_up(), reason="needs Redis on 127.0.0.1:6379")
def test_the_redis_limiter_is_shared_by_independent_limiters():
    # Two limiter objects stand for two worker processes: together they stay under the rate.
    first, second = RedisRateLimiter(REDIS_URL), RedisRateLimiter(REDIS_URL)
    key = uuid.uuid4().int % 10**9
    times: list[float] = []
    lock = threading.Lock()

    def send(limiter) -> None:
        for _ in range(30):
            ratelimit.acquire(key, 20, limiter)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(limiter,)) for limiter in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert busiest_window(times) <= 20
    assert times[-1] - times[0] < 4.5


def test_a_stalled_redis_fails_the_acquire_within_the_configured_timeout(settings):
    # A paused server: connections stay open, the kernel accepts the request, no answer comes.
    from tests.support.redis_server import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        limiter = RedisRateLimiter(server.url)
        assert ratelimit.acquire(1, 100, limiter) == 0.0
        server.pause()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            ratelimit.acquire(1, 100, limiter)
        waited = time.monotonic() - started
        server.resume()
        assert ratelimit.acquire(1, 100, limiter) == 0.0, "the same limiter works again once Redis answers"
    finally:
        server.stop()

    timeout = settings.RATE_LIMIT_REDIS_TIMEOUT
    assert timeout - 0.1 <= waited < timeout + 1.0, f"waited {waited:.1f}s for a Redis that does not answer"
