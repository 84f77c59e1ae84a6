"""An ASGI guard in front of Django for HTTP requests whose ``Content-Type`` parameters cannot be read.

Django reads a request's ``Content-Type`` parameters while it builds the request object, before any
middleware or view runs. Since it refuses an RFC 2231 parameter in an unknown charset
(``application/json; charset*=bogus''x``) with a ``ValueError`` that ``ASGIHandler.create_request`` does not
catch, such a header ends in a server error on every URL. This guard answers it with a 400 instead, using the
same parser, so it refuses exactly what Django would fail on.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.http import parse_header_parameters

logger = logging.getLogger(__name__)

_BODY = b"400 Bad Request: the Content-Type header's parameters cannot be read."


def content_type_readable(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-type":
            try:
                parse_header_parameters(value.decode("latin1"))
            except ValueError:
                return False
    return True


class ContentTypeGuard:
    """Wraps Django's ASGI application; every HTTP request with a readable ``Content-Type`` goes through."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or content_type_readable(scope):
            await self.application(scope, receive, send)
            return
        logger.warning("Bad Request: unreadable Content-Type parameters on %s", scope.get("path", "")[:200])
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(_BODY))]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": _BODY})
