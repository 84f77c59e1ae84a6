"""Who may call the API, and how often: bearer keys, 401s in OpenAI's shape, the per-key limit."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async
from openai import AsyncOpenAI

from apps.accounts.api_keys import api_key_revoke
from apps.api.ratelimit import SlidingWindowLimiter
from tests.api.conftest import Caller, auth

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer "}, "invalid_api_key"),
        ({"Authorization": "Bearer sk-not-ours"}, "invalid_api_key"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "invalid_api_key"),
    ],
)
@pytest.mark.parametrize("endpoint", ["models", "chat/completions"])
async def test_requests_without_a_valid_key_get_a_401(
    api: httpx.AsyncClient, alice: Caller, headers: dict[str, str], code: str, endpoint: str
) -> None:
    if endpoint == "models":
        response = await api.get("/models", headers=headers)
    else:
        response = await api.post(
            "/chat/completions", headers=headers, json={"model": "fusion", "messages": HELLO}
        )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["param"] is None


async def test_a_wrong_secret_for_a_real_prefix_is_refused(api: httpx.AsyncClient, alice: Caller) -> None:
    scheme, prefix, secret = alice.key.split("-", 2)
    forged = f"{scheme}-{prefix}-{secret[::-1]}"
    response = await api.get("/models", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


async def test_a_revoked_key_is_refused(api: httpx.AsyncClient, oai: AsyncOpenAI, alice: Caller) -> None:
    assert (await api.get("/models", headers=auth(alice))).status_code == 200
    key_id = await sync_to_async(lambda: alice.user.api_keys.get().pk)()
    await sync_to_async(api_key_revoke)(user=alice.user, key_id=key_id)
    with pytest.raises(openai.AuthenticationError, match="Invalid or revoked API key"):
        await oai.chat.completions.create(model="fusion", messages=[{"role": "user", "content": "Hello"}])


async def test_the_rate_limit_answers_429_with_retry_after_per_key(
    api: httpx.AsyncClient, alice: Caller, bob: Caller, settings: Any
) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    for _ in range(3):
        assert (await api.get("/models", headers=auth(alice))).status_code == 200
    refused = await api.post(
        "/chat/completions", headers=auth(alice), json={"model": "fusion", "messages": HELLO}
    )
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "3 requests per minute" in error["message"]
    # Another key has its own allowance.
    assert (await api.get("/models", headers=auth(bob))).status_code == 200


async def test_the_openai_client_sees_the_rate_limit(oai: AsyncOpenAI, settings: Any) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    await oai.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.models.list()
    assert caught.value.status_code == 429 and caught.value.response.headers["Retry-After"]


def test_the_window_slides_rather_than_resetting() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(window_s=60, clock=lambda: now[0])
    assert [limiter.hit("k", limit=2).allowed for _ in range(2)] == [True, True]
    now[0] += 20
    refused = limiter.hit("k", limit=2)
    assert not refused.allowed and refused.retry_after == 40
    now[0] += 39.5
    assert not limiter.hit("k", limit=2).allowed
    # The first two hits are now a full window old. The refused ones did not count: retrying early does
    # not lock a key out for longer.
    now[0] += 0.5
    decision = limiter.hit("k", limit=2)
    assert decision.allowed and decision.remaining == 1
    assert limiter.hit("other", limit=2).remaining == 1
