"""Web search for a model, through a SearXNG-compatible JSON API that the admin runs or chooses.

The search service is configured by the admin, not picked by the model, so it is trusted and may live on
localhost: no SSRF guard here. What comes back is not trusted: the reply is validated, result URLs other than
http(s) are dropped (a model might pass them on to web_fetch or to a person), and sizes are capped so one
reply cannot flood the model's context.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from apps.webtools.fetch import status_words

MAX_QUERY_CHARS = 500
MAX_SNIPPET_CHARS = 500
MAX_TITLE_CHARS = 300
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class SearchResult:
    url: str
    title: str
    snippet: str


class SearchFailed(Exception):
    """The search did not work out; the message says why in words and never repeats the service's URL."""


class _Hit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    title: str | None = None
    content: str | None = None


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[_Hit]


def _clipped(text: str | None, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _web_url(url: str) -> bool:
    if len(url) > MAX_URL_CHARS:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


async def web_search(
    query: str, *, base_url: str, client: httpx.AsyncClient, max_results: int = 5, timeout_s: float = 10.0
) -> list[SearchResult]:
    """Up to ``max_results`` results for ``query`` from the search service at ``base_url``; SearchFailed when
    the query is empty or too long, or the service fails, is too slow or answers in an unexpected shape."""
    query = query.strip()
    if not query:
        raise SearchFailed("the search query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchFailed(f"the search query is longer than {MAX_QUERY_CHARS} characters")
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.get(
                base_url.rstrip("/") + "/search",
                params={"q": query, "format": "json"},
                headers={"Accept": "application/json"},
                follow_redirects=False,
                timeout=timeout_s,
            )
    except (TimeoutError, httpx.TimeoutException):
        raise SearchFailed(f"the search service did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise SearchFailed(f"could not reach the search service ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise SearchFailed(f"the search service answered {status_words(response.status_code)}")
    try:
        reply = _Reply.model_validate_json(response.content)
    except ValidationError:
        raise SearchFailed("the search service's reply is not the expected JSON") from None
    results: list[SearchResult] = []
    seen: set[str] = set()
    for hit in reply.results:
        if len(results) >= max_results:
            break
        if not _web_url(hit.url) or hit.url in seen:
            continue
        seen.add(hit.url)
        title = _clipped(hit.title, MAX_TITLE_CHARS) or hit.url
        results.append(
            SearchResult(url=hit.url, title=title, snippet=_clipped(hit.content, MAX_SNIPPET_CHARS))
        )
    return results
