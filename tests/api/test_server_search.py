"""OpenRouter's server-side web search over the API, with only an OpenRouter key: the cited pages are the
fusion result's sources, the search's price is in ``usage``; and OpenRouter's errors keep their meaning
(402 ``insufficient_credits``, 429 ``rate_limited``, an unknown model ``invalid_model``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from tests.api.conftest import Caller, auth
from tests.fakes.upstream import FakeUpstream, ModelScript

QUESTION = "Which cache should a small team pick?"
PAGES = [
    {"url": "https://redis.io/docs/", "title": "Redis docs", "content": "An in-memory store."},
    {"url": "https://memcached.org/", "title": "Memcached"},
]
PLUGIN = {"id": "fusion", "analysis_models": ["vendor/a", "vendor/b"], "model": "vendor/judge"}


@pytest.fixture
def searching(upstream: FakeUpstream, demo_settings: Any) -> FakeUpstream:
    demo_settings.WEB_SEARCH = "auto"
    demo_settings.WEB_SEARCH_URL = ""
    demo_settings.WEB_FETCH = True
    upstream.script(
        "vendor/a", ModelScript(text="Redis.", citations=PAGES, searches=2, cost=0.01, comments=False)
    )
    upstream.script("vendor/b", ModelScript(text="Memcached.", cost=0.01, comments=False))
    # The judge, and the writer (the default panel's), at 0.01 a call too.
    upstream.default = ModelScript(cost=0.01, comments=False)
    return upstream


async def test_the_cited_pages_are_the_sources_and_the_search_price_is_in_the_usage(
    oai: AsyncOpenAI, searching: FakeUpstream
) -> None:
    completion = await oai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}], extra_body={"plugins": [PLUGIN]}
    )

    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["status"] == "ok"
    assert fusion["sources"] == [
        {"url": "https://redis.io/docs/", "title": "Redis docs"},
        {"url": "https://memcached.org/", "title": "Memcached"},
    ]
    assert completion.usage is not None
    # Two seats, the judge and the writer at 0.01 each, and two searches at 0.005.
    assert completion.usage.model_extra["cost"] == pytest.approx(0.04 + 2 * 0.005)  # type: ignore[index]
    (first,) = searching.requests_for("vendor/a")
    assert [tool["type"] for tool in first.body["tools"]] == ["openrouter:web_search", "openrouter:web_fetch"]


async def test_streamed_progress_shows_the_search_with_its_sources(
    oai: AsyncOpenAI, searching: FakeUpstream
) -> None:
    stream = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body={"plugins": [PLUGIN]},
    )
    progress = [chunk.model_extra["fusion_progress"] async for chunk in stream if not chunk.choices]  # type: ignore[index]

    results = [p for p in progress if p["type"] == "seat.tool_result"]
    assert results and all(p["seat"] == 1 and p["tool"] == "openrouter:web_search" for p in results)
    assert [s["url"] for p in results for s in p["sources"]] == [page["url"] for page in PAGES]


@pytest.mark.parametrize(
    ("status", "message", "expected_status", "reason"),
    [
        (402, "Insufficient credits", 402, "insufficient_credits"),
        (429, "Rate limit exceeded", 429, "rate_limited"),
        (400, "vendor/a is not a valid model ID", 404, "invalid_model"),
    ],
)
async def test_a_plain_model_call_keeps_openrouters_failure_reason(
    api: httpx.AsyncClient,
    alice: Caller,
    upstream: FakeUpstream,
    status: int,
    message: str,
    expected_status: int,
    reason: str,
) -> None:
    upstream.script("vendor/a", ModelScript(error_status=status, error_message=message))

    response = await api.post(
        "/chat/completions",
        json={"model": "vendor/a", "messages": [{"role": "user", "content": "Hi"}]},
        headers=auth(alice),
    )

    assert response.status_code == expected_status
    assert response.json()["error"]["failure_reason"] == reason


@pytest.mark.parametrize(
    ("status", "message", "expected_status", "reason"),
    [
        (402, "Insufficient credits", 402, "insufficient_credits"),
        (429, "Rate limit exceeded", 429, "rate_limited"),
        (400, "not a valid model ID", 404, "invalid_model"),
        (503, "No endpoints found for vendor/a.", 502, "all_panels_failed"),
    ],
)
async def test_a_fusion_whose_whole_panel_failed_for_one_reason_says_that_reason(
    api: httpx.AsyncClient,
    alice: Caller,
    upstream: FakeUpstream,
    status: int,
    message: str,
    expected_status: int,
    reason: str,
) -> None:
    for seat in ("vendor/a", "vendor/b"):
        upstream.script(seat, ModelScript(error_status=status, error_message=message))

    response = await api.post(
        "/chat/completions",
        json={"model": "fusion", "messages": [{"role": "user", "content": "Hi"}], "plugins": [PLUGIN]},
        headers=auth(alice),
    )

    assert response.status_code == expected_status
    assert response.json()["error"]["failure_reason"] == reason
