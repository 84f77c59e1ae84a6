"""One shared ``httpx.AsyncClient`` per running event loop, over httpcore pools through httpx's transport API.

A client's connection pools belong to the loop that opened them, so the cache is keyed by loop: Daphne's
single loop gets one long-lived client, and tests that run a loop per test get a fresh client each. Callers
pass their own per-request timeouts; the client's defaults below only guard calls that forget to.

``PoolTransport`` does what httpx's ``AsyncHTTPTransport`` does around its httpcore pool (the request and
response mapping, httpcore's errors raised as httpx's), with public names only, because httpx's transport
takes neither several pools nor a network backend, and httpcore's pool takes its backend as a constructor
argument. Each of the two speed measures (several pools, our backend) is measured on and off in the same run
by ``python -m bench --only floor``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import httpcore
import httpx

from apps.providers.netstream import AsyncioBackend

# The load benchmark streams 600 answers at once from one upstream host; leave headroom above that.
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE_CONNECTIONS = 256
KEEPALIVE_EXPIRY_S = 30.0
# httpcore's pool looks at every connection it holds each time a request starts or a response closes (and,
# for each idle one, counts them all again), so its cost per request grows with the number of open streams:
# at 600 streams one pool spent ~3 ms more CPU per request than 16. Requests are spread over this many pools.
POOL_SHARDS = 16

# httpcore's errors and the httpx errors raised for them, the more specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error to raise for one of httpcore's (same message); ``None`` for any other exception."""
    for core, mapped in _ERRORS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return None


class PoolTransport(httpx.AsyncBaseTransport):
    """httpcore connection pools behind httpx's transport API; a request goes to the pool with the fewest
    responses open.

    At low concurrency that is always the first pool, so keep-alive connections are reused as with one
    pool; under load the open streams spread evenly, each pool holding a fraction of them. Each pool may
    open up to ``MAX_CONNECTIONS`` (a request must never wait for a connection because its pool is full
    while others are idle); idle connections kept alive are shared out.

    Sockets are read through ``netstream.AsyncioBackend`` unless another ``network_backend`` is given
    (httpcore's own default is ``httpcore.AnyIOBackend()``). HTTP/1.1 and no proxy: the upstreams are
    reached directly, as through httpx's transport given no ``proxy``.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        pools: int = POOL_SHARDS,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        backend = AsyncioBackend() if network_backend is None else network_backend
        self._pools = tuple(
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=max(1, MAX_KEEPALIVE_CONNECTIONS // pools),
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
                network_backend=backend,
            )
            for _ in range(pools)
        )
        self._open = [0] * pools

    @property
    def pools(self) -> Sequence[httpcore.AsyncConnectionPool]:
        return self._pools

    @property
    def open_responses(self) -> list[int]:
        """Responses not yet closed, per pool."""
        return list(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        index = min(range(len(self._open)), key=self._open.__getitem__)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        self._open[index] += 1
        try:
            response = await self._pools[index].handle_async_request(core_request)
        except BaseException as exc:
            self._open[index] -= 1
            if (error := _as_httpx(exc)) is None:
                raise
            raise error from exc
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, self._open, index),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body read from httpcore, its errors raised as httpx's; closing it (once) gives its pool's
    place back."""

    def __init__(self, stream: AsyncIterable[bytes], counts: list[int], index: int) -> None:
        self._stream, self._counts, self._index = stream, counts, index
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            if (error := _as_httpx(exc)) is None:
                raise
            raise error from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._counts[self._index] -= 1
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


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


def provider_client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    """A client configured as the shared one, over ``transport`` (given a transport, httpx reads no proxy
    from the environment: the upstreams are reached directly, as for the web tools)."""
    return httpx.AsyncClient(
        timeout=client_timeout(),
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": "FusionRoom/0.1"},
    )


def shared_client() -> httpx.AsyncClient:
    """The client of the running loop, created on first use. Must be called from inside a running loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = provider_client(PoolTransport(ssl_context=_tls()))
        _clients[loop] = client
    return client


async def shared_client_close() -> None:
    """Close the running loop's client, if it has one (server shutdown, test teardown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
