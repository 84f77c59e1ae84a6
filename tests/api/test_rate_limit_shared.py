"""With ``REDIS_URL`` the API's rate limit is one count for every server process. Skipped without Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import httpx
import pytest

from apps.api.ratelimit import RedisSlidingWindowLimiter, limiter, limiter_for
from tests.api.conftest import Caller, auth

REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set")]


def _key() -> str:
    return f"test-{secrets.token_hex(6)}"


async def test_two_processes_share_one_count() -> None:
    # Two limiters with their own connections stand for two server processes.
    first, second = RedisSlidingWindowLimiter(REDIS_URL), RedisSlidingWindowLimiter(REDIS_URL)
    key = _key()
    try:
        decisions = [await limiter.acheck(key, limit=3) for limiter in (first, second, first)]
        assert [d.allowed for d in decisions] == [True, True, True]
        assert [d.remaining for d in decisions] == [2, 1, 0]
        refused = await second.acheck(key, limit=3)
        assert not refused.allowed and 1 <= refused.retry_after <= 60
        assert (await second.acheck(_key(), limit=3)).allowed  # another key has its own allowance
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_shared_window_slides() -> None:
    shared = RedisSlidingWindowLimiter(REDIS_URL, window_s=0.5)
    key = _key()
    try:
        assert (await shared.acheck(key, limit=1)).allowed
        assert not (await shared.acheck(key, limit=1)).allowed
        await asyncio.sleep(0.6)
        assert (await shared.acheck(key, limit=1)).allowed
    finally:
        await shared.aclose()


async def test_an_unreachable_redis_lets_requests_through(caplog: Any) -> None:
    down = RedisSlidingWindowLimiter("redis://127.0.0.1:9/0")
    decision = await down.acheck(_key(), limit=1)
    assert decision.allowed
    assert "Redis failed" in caplog.text


async def test_the_api_counts_in_redis_when_redis_is_configured(
    api: httpx.AsyncClient, alice: Caller, settings: Any
) -> None:
    settings.REDIS_URL = REDIS_URL
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    shared = limiter_for(REDIS_URL)
    assert isinstance(shared, RedisSlidingWindowLimiter)
    for _ in range(2):
        assert (await api.get("/models", headers=auth(alice))).status_code == 200
    assert (await api.get("/models", headers=auth(alice))).status_code == 429
    # Nothing was counted in this process's own limiter: another process would see the same refusal.
    assert limiter._hits == {}
    other = RedisSlidingWindowLimiter(REDIS_URL)
    try:
        assert not (await other.acheck(alice.key.split("-")[1], limit=2)).allowed
    finally:
        await other.aclose()
