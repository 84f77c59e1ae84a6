"""Fetch one web page for a model and hand back its readable text, without letting the model steer the server.

Every hop (the first URL and each redirect) is checked by ``guard`` and then connected to by IP address: the
request goes to the checked address with the real name in ``Host`` and, for https, in SNI and certificate
verification (httpcore's ``sni_hostname`` extension). httpx never resolves the name itself, so DNS cannot
answer differently between the check and the connection. Redirects are followed by hand for the same reason.
One deadline covers the whole fetch, since per-read timeouts never fire on a server that trickles bytes.

Pass a client used for nothing else, without a proxy from the environment (``trust_env=False``: a proxy
would connect on its own terms; ``toolbox`` keeps one per event loop). httpx pools connections by origin,
which is the IP address here, and ``Connection: close`` on every request keeps one name's TLS connection
from serving another name on the same address.
"""

from __future__ import annotations

import asyncio
import http
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from apps.providers.base import text_storable
from apps.webtools.guard import (
    FetchRefused,
    Resolver,
    address_allowed,
    addresses_checked,
    system_resolve,
    url_checked,
)
from apps.webtools.readable import html_to_text

USER_AGENT = "FusionRoom/0.1 (+web_fetch)"
READABLE_TYPES = frozenset(
    {
        *("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/x-markdown"),
        *("application/json", "text/csv", "text/xml", "application/xml"),
    }
)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 2_000_000
    deadline_s: float = 15.0
    max_redirects: int = 5
    max_text_chars: int = 20_000
    parse_budget_s: float = 1.0  # CPU time for turning HTML into text
    content_types: frozenset[str] = READABLE_TYPES


DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True)
class FetchedPage:
    url: str  # after redirects
    title: str
    text: str
    content_type: str
    status: int


class FetchFailed(Exception):
    """The fetch was allowed but did not work out (unreachable, HTTP error, too slow); FetchRefused is for
    the policy saying no."""


async def web_fetch(
    url: str,
    *,
    client: httpx.AsyncClient,
    resolve: Resolver = system_resolve,
    allowed: Callable[[str], bool] = address_allowed,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> FetchedPage:
    """The page at ``url`` as readable text; FetchRefused when the policy refuses a hop, else FetchFailed."""
    try:
        async with asyncio.timeout(limits.deadline_s):
            current = url_checked(url)
            for _ in range(limits.max_redirects + 1):
                response = await _open(current, client, resolve, allowed)
                try:
                    if response.status_code not in _REDIRECTS:
                        return await _page(current, response, limits)
                    current = _redirect_target(current, response)
                finally:
                    await response.aclose()
            raise FetchRefused(f"refused: more than {limits.max_redirects} redirects")
    except TimeoutError:
        raise FetchFailed(f"gave up: the fetch took longer than {limits.deadline_s:g} s") from None


async def _open(
    url: httpx.URL, client: httpx.AsyncClient, resolve: Resolver, allowed: Callable[[str], bool]
) -> httpx.Response:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await addresses_checked(host, port, resolve=resolve, allowed=allowed)
    # Built by hand rather than with client.build_request, so the client's own headers, cookies and auth
    # never ride along.
    headers = {
        "Host": url.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept": "text/html, application/xhtml+xml, text/plain;q=0.9, */*;q=0.5",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    failure = ""
    for address in addresses:
        request = httpx.Request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)
        try:
            return await client.send(request, stream=True, follow_redirects=False, auth=None)
        except httpx.ConnectError as exc:  # refused, unreachable, or a certificate that does not match
            failure = _describe(exc)  # every address passed the check: the next one may answer
        except httpx.HTTPError as exc:
            raise FetchFailed(f"could not fetch from {url.host}: {_describe(exc)}") from None
    raise FetchFailed(f"could not connect to {url.host}: {failure}")


def _describe(exc: Exception) -> str:
    detail = str(exc)[:200]
    return f"{type(exc).__name__} ({detail})" if detail else type(exc).__name__


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise FetchFailed(f"{current.host} answered {response.status_code} without saying where to go")
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise FetchRefused("refused: the redirect points to an invalid URL") from None
    return url_checked(str(target))


def status_words(status: int) -> str:
    """``404 Not Found``: a status as a person reads it."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


async def _page(url: httpx.URL, response: httpx.Response, limits: FetchLimits) -> FetchedPage:
    status = response.status_code
    if not 200 <= status < 300:
        raise FetchFailed(f"{url.host} answered {status_words(status)}")
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in limits.content_types:
        shown = media_type[:100] or "no content type"
        raise FetchRefused(f"refused: {url.host} sent {shown}, which is not a readable page")
    body, cut = await _read_capped(response, limits.max_bytes)
    try:
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset, or a codec that is not a text encoding
        text = body.decode("utf-8", errors="replace")
    text = text_storable(text.removeprefix("\ufeff"))
    title, finished = "", True
    if media_type in _HTML_TYPES:
        # In a thread: the loop keeps serving others while a big page is parsed.
        title, text, finished = await asyncio.to_thread(
            html_to_text, text, max_chars=limits.max_text_chars, budget_s=limits.parse_budget_s
        )
    notes = []
    if cut:
        notes.append(f"[truncated: only the first {limits.max_bytes} bytes of the page were read]")
    if not finished:
        notes.append("[truncated: the page's HTML took too long to read; the rest is left out]")
    if len(text) > limits.max_text_chars:
        text = text[: limits.max_text_chars]
        notes.append(f"[truncated: the text is cut at {limits.max_text_chars} characters]")
    if notes:
        text = text.rstrip() + "\n\n" + "\n".join(notes)
    return FetchedPage(url=str(url), title=title, text=text.strip(), content_type=media_type, status=status)


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the (decompressed) body, and whether there was more. Decompression is done
    here, bounded, because httpx would inflate a whole network chunk at once: a compression bomb."""
    encoding = response.headers.get("content-encoding", "").strip().lower() or "identity"
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise FetchRefused(f"refused: the page is compressed as {encoding[:40]}, which is not supported")
    # wbits 47: a gzip or zlib header, whichever comes.
    inflater = None if encoding == "identity" else zlib.decompressobj(wbits=47)
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            room = max_bytes - len(body)
            # One byte past the room tells that there is more, and bounds what one chunk may inflate to.
            body += inflater.decompress(chunk, room + 1) if inflater else chunk
            if len(body) > max_bytes:
                return bytes(body[:max_bytes]), True
        if inflater:
            body += inflater.flush()
    except zlib.error:
        raise FetchFailed("the page's compressed body is corrupt") from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"the connection broke while reading the page: {_describe(exc)}") from None
    return bytes(body[:max_bytes]), len(body) > max_bytes
