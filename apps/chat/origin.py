"""The WebSocket handshake's Origin check: scheme, host and port, as Django's CSRF check compares them.

A socket carries no CSRF token, so the handshake's ``Origin`` is what stops another site from opening one with
the visitor's cookies. Channels' ``AllowedHostsOriginValidator`` compares only the Origin's host name with
``ALLOWED_HOSTS``: a page on another port of the same host (``http://127.0.0.1:9999`` next to a server on
``:8000``), or over plain http next to an https site, passed. Here the Origin must be the server's own origin
(the scheme of the connection, ws -> http and wss -> https, or ``SECURE_PROXY_SSL_HEADER``'s when it is set;
the ``Host`` header, itself checked against ``ALLOWED_HOSTS``), or one of ``CSRF_TRUSTED_ORIGINS``: the rule
``CsrfViewMiddleware`` applies to the Origin of a POST. Unlike Django's exact string comparison, a default
port written out (``Host: example.com:80`` against ``Origin: http://example.com``) is the same origin.

A handshake without ``Origin`` does not come from a browser (browsers always send it on WebSockets). It is
refused as Channels' validator refused it, unless ``ALLOWED_HOSTS`` contains ``*`` (development only).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """A serialised origin taken apart: lower-case scheme and host (IPv6 without brackets), explicit port."""

    scheme: str
    host: str
    port: int


def origin_parse(text: str) -> Origin | None:
    """``scheme://host[:port]`` as an ``Origin``; None for ``null``, other schemes or anything malformed."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return Origin(scheme=scheme, host=parts.hostname.lower(), port=port or _DEFAULT_PORTS[scheme])


def server_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin this connection reached, as Django sees a request's; None if its host is not allowed."""
    # The same request object Django builds for HTTP, so Host, ALLOWED_HOSTS (and DEBUG's defaults),
    # USE_X_FORWARDED_HOST and SECURE_PROXY_SSL_HEADER mean exactly what they mean for a page.
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    request = ASGIRequest({**scope, "method": "GET", "scheme": scheme}, io.BytesIO())
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    return origin_parse(f"{'https' if request.is_secure() else 'http'}://{host}")


def origin_trusted(origin: Origin) -> bool:
    """Whether ``CSRF_TRUSTED_ORIGINS`` lists ``origin`` (``https://*.example.com`` covers subdomains)."""
    for pattern in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in pattern
        trusted = origin_parse(pattern.replace("://*.", "://", 1) if wildcard else pattern)
        if trusted is None or (trusted.scheme, trusted.port) != (origin.scheme, origin.port):
            continue
        if origin.host == trusted.host or (wildcard and origin.host.endswith("." + trusted.host)):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake's Origin is this site's own, or trusted (see the module docstring)."""
    values = [value for name, value in scope.get("headers", []) if name.lower() == b"origin"]
    if not values:
        return "*" in settings.ALLOWED_HOSTS
    if len(values) > 1:
        return False
    given = values[0].decode("latin1")
    origin = origin_parse(given)
    if origin is not None and (origin == server_origin(scope) or origin_trusted(origin)):
        return True
    logger.warning("WebSocket refused: Origin %r is neither this site's nor a trusted origin", given[:200])
    return False


class SameOriginValidator:
    """ASGI middleware for WebSocket routes: the handshake goes on only from an allowed Origin.

    A refused handshake is closed before it is accepted (the server answers 403; a browser's socket sees close
    code 1006 and no data). Plain ASGI rather than Channels' ``WebsocketDenier``: a refusal costs no consumer
    and no database connection clean-up.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards WebSocket connections")
        if origin_allowed(scope):
            await self.application(scope, receive, send)
            return
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close"})
