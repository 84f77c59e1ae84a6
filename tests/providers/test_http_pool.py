"""The provider transport's pools: reuse at low concurrency, spread under load, counts that come back."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from apps.providers.base import ChatMessage, CompletionRequest
from apps.providers.http import PoolTransport, provider_client, tls_context_ready
from apps.providers.openai_compat import OpenAICompatClient
from tests.fakes.upstream import FakeUpstream, ModelScript


def _request(model: str = "vendor/a") -> CompletionRequest:
    return CompletionRequest(model=model, messages=[ChatMessage(role="user", content="hi")])


async def _transport(pools: int = 16) -> PoolTransport:
    return PoolTransport(ssl_context=await tls_context_ready(), pools=pools)


async def test_calls_one_after_another_on_the_shared_client_reuse_one_kept_alive_connection(
    fake_upstream: FakeUpstream,
) -> None:
    client = OpenAICompatClient(base_url=fake_upstream.base_url, provider="fake", max_retries=0)
    for _ in range(4):
        assert [chunk async for chunk in client.stream(_request())]

    assert fake_upstream.connections_opened == 1


async def test_the_shared_client_takes_no_proxy_from_the_environment(
    fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = OpenAICompatClient(base_url=fake_upstream.base_url, provider="fake", max_retries=0)

    assert [chunk async for chunk in client.stream(_request())]
    assert len(fake_upstream.requests) == 1


async def test_streams_open_at_the_same_time_spread_over_the_pools(fake_upstream: FakeUpstream) -> None:
    gate = asyncio.Event()
    fake_upstream.script("vendor/slow", ModelScript(text="one two three", tokens_per_s=20, comments=False))
    transport = await _transport()
    http = provider_client(transport)
    client = OpenAICompatClient(
        base_url=fake_upstream.base_url, provider="fake", max_retries=0, http_client=http
    )
    seen: list[list[int]] = []

    async def one() -> None:
        async for _chunk in client.stream(_request("vendor/slow")):
            seen.append(transport.open_responses)
            await gate.wait()

    tasks = [asyncio.create_task(one()) for _ in range(3)]
    async with asyncio.timeout(5):
        while len(seen) < 3:
            await asyncio.sleep(0.01)
    assert sorted(transport.open_responses, reverse=True)[:4] == [1, 1, 1, 0]
    gate.set()
    await asyncio.gather(*tasks)
    assert sum(transport.open_responses) == 0
    await http.aclose()


async def test_a_failed_request_gives_its_place_back(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/broken", ModelScript(error_status=503))
    transport = await _transport()
    http = provider_client(transport)
    client = OpenAICompatClient(
        base_url=fake_upstream.base_url, provider="fake", max_retries=0, http_client=http
    )
    with pytest.raises(Exception, match=r"503|Upstream error"):
        async for _chunk in client.stream(_request("vendor/broken")):
            pass
    # And a server that is not there at all.
    nowhere = OpenAICompatClient(
        base_url="http://127.0.0.1:9/v1", provider="nowhere", max_retries=0, http_client=http
    )
    with pytest.raises(Exception):  # noqa: B017 - the provider error's text is tested elsewhere
        async for _chunk in nowhere.stream(_request()):
            pass

    assert sum(transport.open_responses) == 0
    await http.aclose()


async def test_closing_the_transport_closes_every_pool(fake_upstream: FakeUpstream) -> None:
    transport = await _transport(pools=3)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(f"{fake_upstream.base_url}/models")).status_code == 200
        assert sum(len(pool.connections) for pool in transport.pools) == 1
    assert all(pool.connections == [] for pool in transport.pools)
