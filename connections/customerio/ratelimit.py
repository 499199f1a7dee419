"""Per-connection rate limiting, shared by every worker.

A sliding-window log: a request may start only when fewer than `rate` requests started
in the last window. Unlike a fixed one-second counter, this keeps *every* one-second
window under the limit, including the ones that straddle a second boundary.

With a Redis broker the log lives in Redis (one Lua script, Redis' own clock, so workers
on different machines agree). Otherwise an in-process log is used: correct for a single
worker process (the embedded demo), not shared across processes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from functools import lru_cache
from typing import Protocol

from django.conf import settings

# Longer than a second: a request reaches Customer.io a little after it was allowed here,
# by an amount that varies (busy CPU, several requests in flight), and that jitter must not
# squeeze more than the rate into any second over there. Measured with bench/ratelimit.py:
# 1.02 s let 105 requests into one second once v1 sent several requests at a time.
WINDOW_SECONDS = 1.05

_REDIS_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RateLimiter(Protocol):
    def try_acquire(self, key: str, rate: int) -> float:
        """0 when a request may start now (and it is counted), else seconds to wait."""


class LocalRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}

    def try_acquire(self, key: str, rate: int) -> float:
        now = time.monotonic()
        with self._lock:
            log = self._logs.setdefault(key, deque())
            while log and log[0] <= now - WINDOW_SECONDS:
                log.popleft()
            if len(log) < rate:
                log.append(now)
                return 0.0
            return log[0] + WINDOW_SECONDS - now


class RedisRateLimiter:
    def __init__(self, url: str, timeout: float | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # The script answers in microseconds: a Redis silent for `timeout` seconds is stalled
        # (paused, partitioned, a half-open connection) and a worker must not wait on it for
        # ever. The error fails the forwarding task, whose except-branch gives the claimed rows
        # back at once; beat's sweep sends them later. Set here rather than left to redis-py,
        # whose default was "no timeout" before 6.0 (5 s since).
        timeout = settings.RATE_LIMIT_REDIS_TIMEOUT if timeout is None else timeout
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One retry on a broken connection (a pooled socket to a restarted Redis), none
            # on a timeout: retrying a stalled server only doubles the wait.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self._script = self._redis.register_script(_REDIS_SCRIPT)

    def try_acquire(self, key: str, rate: int) -> float:
        wait = self._script(keys=[f"cioaudience:rate:{key}"], args=[rate, WINDOW_SECONDS, uuid.uuid4().hex])
        return max(0.0, float(wait))


@lru_cache(maxsize=1)
def _limiter_for(url: str) -> RateLimiter:
    if url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(url)
    return LocalRateLimiter()


def get_limiter() -> RateLimiter:
    return _limiter_for(settings.RATE_LIMIT_REDIS_URL or settings.CELERY_BROKER_URL)


def acquire(connection_id: int, rate: int, limiter: RateLimiter | None = None) -> float:
    """Block until this connection may send one more request; returns the seconds waited."""
    limiter = limiter or get_limiter()
    waited = 0.0
    while (wait := limiter.try_acquire(f"connection:{connection_id}", rate)) > 0:
        time.sleep(wait)
        waited += wait
    return waited
