"""OpenRouter's server-side web tools at the HTTP seam: ``url_citation`` annotations (streamed in a delta, or
on a whole message) become ``CitationDelta`` chunks, and the usage counts the searches with their price."""

from __future__ import annotations

from typing import Any

import pytest

from apps.providers.base import (
    ChatMessage,
    Citation,
    CitationDelta,
    CompletionRequest,
    StreamChunk,
    TextDelta,
    UsageReport,
)
from apps.providers.openai_compat import OpenAICompatClient
from apps.providers.openai_wire import citations_parse
from tests.fakes.upstream import FakeUpstream, ModelScript

SEARCH_TOOLS: list[dict[str, Any]] = [
    {"type": "openrouter:web_search", "parameters": {"max_results": 5, "max_total_results": 20}},
    {"type": "openrouter:web_fetch", "parameters": {"max_uses": 4}},
]
PAGES = [
    {"url": "https://redis.io/docs/", "title": "Redis docs", "content": "An in-memory store."},
    {"url": "https://memcached.org/", "title": "Memcached", "content": "A memory cache."},
]


def _client(upstream: FakeUpstream) -> OpenAICompatClient:
    return OpenAICompatClient(base_url=upstream.base_url, api_key="sk-or-v1-test", backoff_base=0.01)


def _request(tools: list[dict[str, Any]] | None = SEARCH_TOOLS) -> CompletionRequest:
    return CompletionRequest(
        model="vendor/searcher",
        messages=[ChatMessage(role="user", content="Which cache?")],
        tools=tools,
    )


async def _collect(upstream: FakeUpstream, request: CompletionRequest) -> list[StreamChunk]:
    return [chunk async for chunk in _client(upstream).stream(request)]


def _cited(chunks: list[StreamChunk]) -> list[Citation]:
    return [cited for chunk in chunks if isinstance(chunk, CitationDelta) for cited in chunk.citations]


def _usage(chunks: list[StreamChunk]) -> UsageReport:
    (report,) = [chunk for chunk in chunks if isinstance(chunk, UsageReport)]
    return report


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole-message"])
async def test_citations_and_the_search_price_arrive_with_the_answer(
    fake_upstream: FakeUpstream, streamed: bool
) -> None:
    fake_upstream.script(
        "vendor/searcher",
        ModelScript(
            text="Redis, for most teams.", citations=PAGES, searches=2, cost=0.001, ignore_stream=not streamed
        ),
    )

    chunks = await _collect(fake_upstream, _request())

    text = "".join(chunk.text for chunk in chunks if isinstance(chunk, TextDelta))
    assert text == "Redis, for most teams."
    assert [(c.url, c.title) for c in _cited(chunks)] == [
        ("https://redis.io/docs/", "Redis docs"),
        ("https://memcached.org/", "Memcached"),
    ]
    assert _cited(chunks)[0].start_index == 0 and _cited(chunks)[0].end_index == len(text)
    usage = _usage(chunks).usage
    assert usage.web_search_requests == 2
    assert usage.cost == pytest.approx(0.001 + 2 * 0.005)
    (sent,) = fake_upstream.completions()
    assert sent.body["tools"] == SEARCH_TOOLS


async def test_streamed_citations_arrive_while_the_answer_is_still_streaming(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script(
        "vendor/searcher", ModelScript(text="one two three four", citations=PAGES[:1], citations_after=0)
    )

    chunks = await _collect(fake_upstream, _request())

    kinds = [chunk.kind for chunk in chunks if chunk.kind in ("text", "citations")]
    assert kinds == ["text", "citations", "text", "text", "text"]


async def test_a_request_without_the_server_tool_gets_no_citations_and_no_search_price(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script("vendor/searcher", ModelScript(text="From memory.", citations=PAGES, cost=0.001))

    chunks = await _collect(fake_upstream, _request(tools=None))

    assert _cited(chunks) == []
    usage = _usage(chunks).usage
    assert usage.web_search_requests == 0 and usage.cost == pytest.approx(0.001)


def test_annotations_of_other_shapes_or_with_unsafe_addresses_are_skipped() -> None:
    annotations: list[Any] = [
        {"type": "url_citation", "url_citation": {"url": "https://ok.example/a", "title": "A"}},
        {"type": "url_citation", "url_citation": {"url": "javascript:alert(1)", "title": "script"}},
        {"type": "url_citation", "url_citation": {"url": "ftp://files.example/b"}},
        {"type": "url_citation", "url_citation": {"title": "no address"}},
        {"type": "url_citation", "url_citation": {"url": 42}},
        {"type": "file_citation", "file_citation": {"file_id": "f"}},
        {"type": "url_citation"},
        "not an object",
        {"type": "url_citation", "url_citation": {"url": "http://ok.example/\x00b", "title": "T" * 1000}},
    ]

    cited = citations_parse(annotations)

    assert [c.url for c in cited] == ["https://ok.example/a", "http://ok.example/\ufffdb"]
    assert len(cited[1].title) == 300
