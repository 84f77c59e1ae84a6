"""Web tools over the API: sources in the fusion result, tool progress while streaming, ``tools: []`` off."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest
from tests.fakes.web import Loopback, reply

QUESTION = "Which cache should a small team pick?"
RESULTS = {
    "results": [
        {"url": "https://redis.io/docs/", "title": "Redis docs", "content": "An in-memory store."},
        {"url": "https://memcached.org/", "title": "Memcached", "content": "A memory cache."},
    ]
}


def searcher(request: RecordedRequest) -> ModelScript:
    """Searches once, then answers from what it found."""
    if any(message.get("role") == "tool" for message in request.body["messages"]):
        return ModelScript(text="Redis, from what I found.", comments=False)
    return ModelScript(
        text="", comments=False, tool_calls=[{"name": "web_search", "arguments": {"query": "best cache"}}]
    )


@pytest.fixture
async def search_service(upstream: FakeUpstream, demo_settings: Any) -> AsyncIterator[Loopback]:
    async with Loopback() as searx:
        searx.routes["/search?q=best+cache&format=json"] = reply(
            200, json.dumps(RESULTS).encode(), "application/json"
        )
        demo_settings.WEB_SEARCH_URL = f"http://127.0.0.1:{searx.port}"
        demo_settings.WEB_FETCH = True
        for seat in ("vendor/a", "vendor/b"):
            upstream.script(seat, searcher)
        yield searx


def _plugin(**extra: object) -> dict[str, object]:
    return {"id": "fusion", "analysis_models": ["vendor/a", "vendor/b"], "model": "demo/judge", **extra}


async def test_the_fusion_result_lists_every_page_the_panel_found_once(
    oai: AsyncOpenAI, upstream: FakeUpstream, search_service: Loopback
) -> None:
    completion = await oai.chat.completions.create(
        model="fusion/demo",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"plugins": [_plugin()]},
    )

    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["status"] == "ok"
    assert fusion["sources"] == [
        {"url": "https://redis.io/docs/", "title": "Redis docs"},
        {"url": "https://memcached.org/", "title": "Memcached"},
    ]
    assert [r["content"] for r in fusion["responses"]] == ["Redis, from what I found."] * 2
    assert len(search_service.seen) == 2  # one search per seat
    first = upstream.requests_for("vendor/a")[0]
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["web_search", "web_fetch"]


async def test_streaming_reports_each_tool_call_and_its_result(
    oai: AsyncOpenAI, upstream: FakeUpstream, search_service: Loopback
) -> None:
    stream = await oai.chat.completions.create(
        model="fusion/demo",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body={"plugins": [_plugin()]},
    )
    progress = [chunk.model_extra["fusion_progress"] async for chunk in stream if not chunk.choices]  # type: ignore[index]

    calls = [p for p in progress if p["type"] == "seat.tool_call"]
    results = [p for p in progress if p["type"] == "seat.tool_result"]
    assert sorted(p["seat"] for p in calls) == [1, 2]
    assert all(p["tool"] == "web_search" and p["detail"] == "best cache" for p in calls)
    assert sorted(p["seat"] for p in results) == [1, 2]
    assert all(p["ok"] and p["detail"] == "2 results" and len(p["sources"]) == 2 for p in results)


async def test_an_empty_tools_list_in_the_plugin_turns_the_web_tools_off(
    oai: AsyncOpenAI, upstream: FakeUpstream, search_service: Loopback
) -> None:
    for seat in ("vendor/a", "vendor/b"):
        upstream.script(seat, ModelScript(text="No tools needed.", comments=False))

    completion = await oai.chat.completions.create(
        model="fusion/demo",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"plugins": [_plugin(tools=[])]},
    )

    assert completion.model_extra["fusion"]["sources"] == []  # type: ignore[index]
    assert all("tools" not in request.body for request in upstream.completions())
    assert search_service.seen == []
