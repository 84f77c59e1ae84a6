"""Per-key request limit: an in-process sliding window.

Why in-process and not Django's cache: the project configures no shared cache (the default LocMemCache is
per-process too), so the cache would add thread hops (its async API wraps the sync one) without sharing
anything. A sliding log is exact (no burst of twice the limit at a window edge) and costs a deque per active
key. Under Daphne every request of a process runs on one event loop and ``hit`` never awaits, so
check-and-record is atomic there; the lock keeps it so under threads too (the sync test client). Several
server processes each count on their own: the effective limit is the setting times the number of processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


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


#: The process-wide limiter the API views use.
limiter = SlidingWindowLimiter()
