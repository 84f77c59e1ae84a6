"""web_search against a fake SearXNG: a real HTTP server on loopback that answers ``/search`` with JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apps.webtools.search import MAX_SNIPPET_CHARS, SearchFailed, SearchResult, web_search
from tests.fakes.web import Handler, Loopback, Seen, reply


def json_reply(payload: object) -> Handler:
    return reply(200, json.dumps(payload).encode(), "application/json")


async def never_answer(seen: Seen, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


@pytest.fixture
async def searx() -> AsyncIterator[Loopback]:
    async with Loopback() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as shared:
        yield shared


def base(searx: Loopback) -> str:
    return f"http://127.0.0.1:{searx.port}"


HITS = [
    {"url": "https://docs.python.org/3/library/ipaddress.html", "title": "ipaddress", "content": "IPv4/IPv6"},
    {"url": "javascript:alert(1)", "title": "script", "content": "x"},
    {"url": "ftp://files.example.org/pub", "title": "ftp", "content": "x"},
    {"url": "/relative/path", "title": "relative", "content": "x"},
    {"url": "data:text/html,<b>hi</b>", "title": "data", "content": "x"},
    {"url": "http:///no-host", "title": "no host", "content": "x"},
    {"url": "http://example.org/a", "title": None, "engine": "ddg", "score": 2.5, "positions": [1]},
    {"url": "HTTPS://example.org/b", "title": "  B\n title ", "content": "line\n\n  two"},
]


async def test_it_parses_results_and_keeps_only_http_urls(searx: Loopback, client: httpx.AsyncClient) -> None:
    searx.routes["/search"] = json_reply({"query": "q", "results": HITS, "answers": [], "suggestions": []})
    results = await web_search("ipaddress", base_url=base(searx), client=client)
    assert results == [
        SearchResult("https://docs.python.org/3/library/ipaddress.html", "ipaddress", "IPv4/IPv6"),
        SearchResult("http://example.org/a", "http://example.org/a", ""),
        SearchResult("HTTPS://example.org/b", "B title", "line two"),
    ]


async def test_it_caps_the_number_of_results_and_the_snippet_length(
    searx: Loopback, client: httpx.AsyncClient
) -> None:
    hits = [{"url": f"https://example.org/{n}", "title": f"t{n}", "content": "w " * 2000} for n in range(20)]
    searx.routes["/search"] = json_reply({"results": [hits[0], *hits]})  # the first one twice
    results = await web_search("many", base_url=base(searx), client=client, max_results=3)
    assert [r.url for r in results] == [
        "https://example.org/0",
        "https://example.org/1",
        "https://example.org/2",
    ]
    assert all(len(r.snippet) == MAX_SNIPPET_CHARS and r.snippet.endswith("…") for r in results)


async def test_it_sends_the_query_url_encoded_and_asks_for_json(
    searx: Loopback, client: httpx.AsyncClient
) -> None:
    searx.routes["/searx/search"] = json_reply({"results": []})
    query = "fish & chips? 100% =#1 été"
    assert await web_search(query, base_url=base(searx) + "/searx/", client=client) == []
    target = searx.seen[0].target
    assert urlsplit(target).path == "/searx/search"
    assert parse_qs(urlsplit(target).query, strict_parsing=True) == {"q": [query], "format": ["json"]}
    assert "& chips" not in target
    assert "#" not in target


async def test_an_http_error_fails_with_the_status(searx: Loopback, client: httpx.AsyncClient) -> None:
    searx.routes["/search"] = reply(500, b"boom", "text/plain")
    with pytest.raises(SearchFailed, match=r"^the search service answered 500 Internal Server Error$"):
        await web_search("q", base_url=base(searx), client=client)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>not json</html>", id="html"),
        pytest.param(b'{"results": [', id="cut-json"),
        pytest.param(b'{"answers": []}', id="no-results"),
        pytest.param(b'{"results": "none"}', id="results-not-a-list"),
        pytest.param(b'[{"url": "https://example.org/"}]', id="top-level-list"),
        pytest.param(b'{"results": [{"title": "no url"}]}', id="hit-without-url"),
        pytest.param(b'{"results": [{"url": 42}]}', id="url-not-a-string"),
    ],
)
async def test_a_reply_that_is_not_the_expected_json_fails(
    searx: Loopback, client: httpx.AsyncClient, body: bytes
) -> None:
    searx.routes["/search"] = reply(200, body, "application/json")
    with pytest.raises(SearchFailed, match=r"^the search service's reply is not the expected JSON$"):
        await web_search("q", base_url=base(searx), client=client)


async def test_a_slow_search_service_fails_on_time(searx: Loopback, client: httpx.AsyncClient) -> None:
    searx.routes["/search"] = never_answer
    started = time.monotonic()
    with pytest.raises(SearchFailed, match=r"^the search service did not answer within 0\.3 s$"):
        await web_search("q", base_url=base(searx), client=client, timeout_s=0.3)
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_search_service_fails(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SearchFailed, match=r"^could not reach the search service \(ConnectError\)$"):
        await web_search("q", base_url=f"http://127.0.0.1:{port}", client=client)


@pytest.mark.parametrize("query", ["", "   \n\t", "x" * 501])
async def test_an_empty_or_overlong_query_fails_without_a_request(
    searx: Loopback, client: httpx.AsyncClient, query: str
) -> None:
    with pytest.raises(SearchFailed, match=r"^the search query is (empty|longer than 500 characters)$"):
        await web_search(query, base_url=base(searx), client=client)
    assert searx.seen == []
