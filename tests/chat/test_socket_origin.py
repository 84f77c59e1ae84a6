"""A socket handshake is accepted only from the site's own origin (scheme, host and port) or a trusted one.

Most cases run against ``SameOriginValidator`` around an app that accepts everything, so only the origin
check decides; the last ones go through the full application of ``fusionroom/asgi.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from apps.chat.origin import SameOriginValidator
from tests.chat.conftest import Room, socket_open


async def accept_everything(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI WebSocket app that accepts any handshake (no consumer, so no database)."""
    while (message := await receive())["type"] != "websocket.disconnect":
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})


GUARDED = SameOriginValidator(accept_everything)


async def over_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The guarded app as Daphne calls it for a wss:// connection."""
    await GUARDED({**scope, "scheme": "wss"}, receive, send)


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = None


async def handshake(headers: list[tuple[bytes, bytes]], app: Any = GUARDED) -> bool:
    communicator = WebsocketCommunicator(app, "/ws/conversations/1/", headers=headers)
    connected, _code = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return bool(connected)


async def test_the_servers_own_origin_is_accepted() -> None:
    assert await handshake([(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")])


async def test_the_same_host_on_another_port_is_refused() -> None:
    assert not await handshake([(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:9999")])
    assert not await handshake([(b"host", b"localhost:8000"), (b"origin", b"http://localhost")])


@pytest.mark.parametrize(
    ("app", "origin"),
    [(GUARDED, b"https://localhost:8000"), (over_tls, b"http://localhost:8000")],
    ids=["https-page-on-ws", "http-page-on-wss"],
)
async def test_another_scheme_on_the_same_host_and_port_is_refused(app: Any, origin: bytes) -> None:
    assert not await handshake([(b"host", b"localhost:8000"), (b"origin", origin)], app=app)


async def test_a_wss_connection_accepts_its_https_origin() -> None:
    headers = [(b"host", b"chat.example.com"), (b"origin", b"https://chat.example.com")]
    assert await handshake(headers, app=over_tls)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (b"localhost:80", b"http://localhost"),
        (b"localhost", b"http://localhost:80"),
        (b"chat.example.com:443", b"https://chat.example.com"),
    ],
)
async def test_a_default_port_written_out_or_left_out_is_the_same_origin(host: bytes, origin: bytes) -> None:
    app = over_tls if origin.startswith(b"https") else GUARDED
    assert await handshake([(b"host", host), (b"origin", origin)], app=app)


async def test_an_https_origin_on_port_80_is_not_the_http_default() -> None:
    headers = [(b"host", b"chat.example.com:80"), (b"origin", b"https://chat.example.com:80")]
    assert not await handshake(headers)


async def test_an_ipv6_literal_host_matches_on_address_and_port() -> None:
    assert await handshake([(b"host", b"[::1]:8000"), (b"origin", b"http://[::1]:8000")])
    assert not await handshake([(b"host", b"[::1]:8000"), (b"origin", b"http://[::1]:9999")])
    assert not await handshake([(b"host", b"[::1]:8000"), (b"origin", b"http://127.0.0.1:8000")])


async def test_a_host_outside_allowed_hosts_is_refused_even_when_the_origin_matches_it() -> None:
    # A rebound DNS name pointing at the server: Django would refuse the page, so the socket is refused too.
    assert not await handshake([(b"host", b"evil.example:8000"), (b"origin", b"http://evil.example:8000")])


async def test_a_trusted_origin_is_accepted_with_its_exact_scheme_and_port(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    # Behind a proxy that does not pass the public Host on, the trusted origins are what match.
    inside = (b"host", b"127.0.0.1:8000")
    assert await handshake([inside, (b"origin", b"https://chat.example.com")])
    assert await handshake([inside, (b"origin", b"https://chat.example.com:443")])
    assert await handshake([inside, (b"origin", b"https://eu.example.org")])
    assert await handshake([inside, (b"origin", b"https://example.org")])
    assert not await handshake([inside, (b"origin", b"https://chat.example.com:8443")])
    assert not await handshake([inside, (b"origin", b"http://chat.example.com")])
    assert not await handshake([inside, (b"origin", b"http://eu.example.org")])
    assert not await handshake([inside, (b"origin", b"https://eu.example.org.evil.example")])
    assert not await handshake([inside, (b"origin", b"https://evilexample.org")])


async def test_the_proxy_ssl_header_sets_the_scheme_only_when_configured(settings: Any) -> None:
    proxied = [(b"host", b"chat.example.com"), (b"x-forwarded-proto", b"https")]
    https_page = (b"origin", b"https://chat.example.com")
    assert not await handshake([*proxied, https_page]), "the header is ignored unless the setting trusts it"

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await handshake([*proxied, https_page])
    assert not await handshake([*proxied, (b"origin", b"http://chat.example.com")])


@pytest.mark.parametrize(
    "origin",
    [b"null", b"file://", b"http://localhost:8000/path", b"http://user@localhost:8000", b"http://[::1", b""],
)
async def test_malformed_or_opaque_origins_are_refused(origin: bytes) -> None:
    assert not await handshake([(b"host", b"localhost:8000"), (b"origin", origin)])


async def test_two_origin_headers_are_refused() -> None:
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"origin", b"http://evil.example")]
    assert not await handshake(headers)


async def test_a_missing_origin_is_refused_unless_every_host_is_allowed(settings: Any) -> None:
    # Browsers always send Origin on a WebSocket; a client that does not is not a browser. Refused, as
    # Channels' validator refused it, except where ALLOWED_HOSTS is "*" (development only).
    assert not await handshake([(b"host", b"localhost")])
    settings.ALLOWED_HOSTS = ["*"]
    assert await handshake([(b"host", b"localhost")])
    assert not await handshake([(b"host", b"localhost"), (b"origin", b"http://evil.example")])


@pytest.mark.django_db(transaction=True)
async def test_the_application_refuses_another_port_and_accepts_its_own_origin(room: Room) -> None:
    socket, connected, _code = await socket_open(
        room.conversation.pk, cookie=room.cookie, origin=b"http://localhost:9999"
    )
    assert not connected
    socket, connected, _code = await socket_open(room.conversation.pk, cookie=room.cookie)
    assert connected
    assert (await socket.receive())["type"] == "hello"
    await socket.close()
