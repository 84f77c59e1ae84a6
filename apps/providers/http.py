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

import httpx

from apps.providers.netstream import AsyncioBackend

# The load benchmark streams 600 answers at once from one upstream host; leave headroom above that.
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE_CONNECTIONS = 256
KEEPALIVE_EXPIRY_S = 30.0

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


async def shared_client_ready() -> httpx.AsyncClient:
    """``shared_client()``, with the one-off loading of CA certificates done in a thread, not on the loop."""
    if _tls_context is None:
        await asyncio.to_thread(_tls)
    return shared_client()


def shared_client() -> httpx.AsyncClient:
    """The client of the running loop, created on first use. Must be called from inside a running loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        transport = httpx.AsyncHTTPTransport(
            verify=_tls(),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
        )
        # Socket reads through plain asyncio rather than anyio: see ``netstream``. httpx takes no backend
        # argument, so it is set on the pool it built.
        transport._pool._network_backend = AsyncioBackend()
        client = httpx.AsyncClient(
            timeout=client_timeout(),
            transport=transport,
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
