"""Per-key request limit: a sliding log, in the process or, with ``REDIS_URL``, in Redis for every process.

A sliding log is exact (no burst of twice the limit at a window edge). One server process keeps it in memory
(a deque per active key): under Daphne every request of a process runs on one event loop and ``hit`` never
awaits, so check-and-record is atomic there; the lock keeps it so under threads too (the sync test client).
Several processes share Redis (already there for the channel layer): the log is a sorted set per key,
checked and recorded by one Lua script, on the Redis server's clock, so the limit is the setting whatever the
number of processes. If Redis cannot be reached the request is let through and the failure logged: the
limit protects the providers' budget, and a Redis outage already stops live streaming.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    # Whole seconds until a request would be allowed again (0 when allowed).
    retry_after: int


class SlidingWindowLimiter:
    def __init__(self, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int) -> RateDecision:
        """Record a request for ``key`` if it is within ``limit`` per window; say when to retry if not."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            cutoff = now - self.window_s
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= limit:
                wait = hits[0] + self.window_s - now
                return RateDecision(False, limit, 0, max(1, math.ceil(wait)))
            hits.append(now)
            if len(self._hits) > 10_000:
                self._forget_idle(cutoff)
            return RateDecision(True, limit, limit - len(hits), 0)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _forget_idle(self, cutoff: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]

    async def acheck(self, key: str, *, limit: int) -> RateDecision:
        return self.hit(key, limit=limit)


class Limiter(Protocol):
    async def acheck(self, key: str, *, limit: int) -> RateDecision: ...


# KEYS[1]: the key's log. ARGV: window (ms), limit, a unique member. Returns {allowed, count, oldest (ms)}.
_SLIDING_LOG = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, count, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, count + 1, 0}
"""


class RedisSlidingWindowLimiter:
    """The same sliding log, shared by every process through Redis (one client per event loop)."""

    def __init__(self, url: str, *, window_s: float = 60.0, namespace: str = "fusionroom:ratelimit:") -> None:
        self.url = url
        self.window_ms = int(window_s * 1000)
        self.namespace = namespace
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _client(self) -> Any:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            self._clients[loop] = client
        return client

    async def acheck(self, key: str, *, limit: int) -> RateDecision:
        import redis.exceptions

        member = f"{time.time_ns()}-{secrets.token_hex(4)}"
        try:
            allowed, count, wait_ms = await self._client().eval(
                _SLIDING_LOG, 1, self.namespace + key, self.window_ms, limit, member
            )
        except (redis.exceptions.RedisError, OSError) as error:
            logger.warning("rate limit not checked, Redis failed: %s", error)
            return RateDecision(True, limit, limit, 0)
        if not allowed:
            return RateDecision(False, limit, 0, max(1, math.ceil(int(wait_ms) / 1000)))
        return RateDecision(True, limit, max(0, limit - int(count)), 0)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


#: The process's own limiter (one server process, and the tests).
limiter = SlidingWindowLimiter()
_shared: dict[str, RedisSlidingWindowLimiter] = {}


def limiter_for(redis_url: str) -> Limiter:
    """The limiter the API uses: shared through Redis when ``REDIS_URL`` is set, else this process's."""
    if not redis_url:
        return limiter
    if redis_url not in _shared:
        _shared[redis_url] = RedisSlidingWindowLimiter(redis_url)
    return _shared[redis_url]
