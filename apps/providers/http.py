"""One shared ``httpx.AsyncClient`` per running event loop.

A client's connection pool belongs to the loop that opened it, so the cache is keyed by loop: Daphne's
single loop gets one long-lived pool, and tests that run a loop per test get a fresh client each. Callers
pass their own per-request timeouts; the client's defaults below only guard calls that forget to.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import AsyncIterator

import httpx

from apps.providers.netstream import AsyncioBackend

# The load benchmark streams 600 answers at once from one upstream host; leave headroom above that.
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE_CONNECTIONS = 256
KEEPALIVE_EXPIRY_S = 30.0
# httpcore's pool looks at every connection it holds each time a request starts or a response closes, so
# its cost per request grows with the number of open streams. Requests are spread over this many pools.
POOL_SHARDS = 16


class ShardedTransport(httpx.AsyncBaseTransport):
    """``POOL_SHARDS`` connection pools; a request goes to the one with the fewest responses open.

    At low concurrency that is always the first pool, so keep-alive connections are reused as with one
    pool; under load the open streams spread evenly, each pool holding a fraction of them. Each shard may
    open up to ``MAX_CONNECTIONS`` (a request must never wait for a connection because its shard is full
    while others are idle); idle connections kept alive are shared out.
    """

    def __init__(self, *, verify: ssl.SSLContext, shards: int = POOL_SHARDS) -> None:
        self._shards = []
        for _ in range(shards):
            transport = httpx.AsyncHTTPTransport(
                verify=verify,
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS,
                    max_keepalive_connections=max(1, MAX_KEEPALIVE_CONNECTIONS // shards),
                    keepalive_expiry=KEEPALIVE_EXPIRY_S,
                ),
            )
            # Socket reads through plain asyncio rather than anyio: see ``netstream``. httpx takes no
            # backend argument, so it is set on the pool it built.
            transport._pool._network_backend = AsyncioBackend()
            self._shards.append(transport)
        self._open = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._open)), key=self._open.__getitem__)
        self._open[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._open[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, self._open, index)
        return response

    async def aclose(self) -> None:
        for transport in self._shards:
            await transport.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that tells its shard's count when it is closed (once)."""

    def __init__(self, stream: httpx.AsyncByteStream, counts: list[int], index: int) -> None:
        self._stream, self._counts, self._index = stream, counts, index
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The body's own iterator, not a generator around it: no extra step per chunk.
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._counts[self._index] -= 1
        await self._stream.aclose()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def client_timeout(
    *, connect: float = 10.0, read: float = 120.0, write: float = 30.0, pool: float = 30.0
) -> httpx.Timeout:
    """An explicit timeout for every phase of a request (httpx has no total deadline: callers add one)."""
    return httpx.Timeout(connect=connect, read=read, write=write, pool=pool)


_tls_context: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def _tls() -> ssl.SSLContext:
    """The verifying TLS context every shared client uses: loading the CA bundle takes tens of ms, once."""
    global _tls_context
    with _tls_lock:
        if _tls_context is None:
            _tls_context = httpx.create_ssl_context()
        return _tls_context


async def tls_context_ready() -> ssl.SSLContext:
    """The verifying TLS context, its one-off loading of CA certificates done in a thread, not on the loop."""
    if _tls_context is None:
        await asyncio.to_thread(_tls)
    return _tls()


async def shared_client_ready() -> httpx.AsyncClient:
    """``shared_client()``, with the TLS context loaded off the loop first."""
    await tls_context_ready()
    return shared_client()


def shared_client() -> httpx.AsyncClient:
    """The client of the running loop, created on first use. Must be called from inside a running loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=client_timeout(),
            transport=ShardedTransport(verify=_tls()),
            follow_redirects=False,
            headers={"User-Agent": "FusionRoom/0.1"},
        )
        _clients[loop] = client
    return client


async def shared_client_close() -> None:
    """Close the running loop's client, if it has one (server shutdown, test teardown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
