"""Loopback web servers and fake DNS for the web tools' tests: pages, redirects, endless bodies, names.

``Loopback`` is a small HTTP/1.1 server on a free 127.0.0.1 port whose paths answer as their handlers say; it
records every request (target and headers). ``FakeDNS`` resolves names that exist only here, so a test can
point ``docs.example.test`` at the server and tell, from the ``Host`` header, which name a request carried.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from apps.webtools.guard import address_allowed


@dataclass
class Seen:
    target: str
    headers: dict[str, str]


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Loopback:
    """A small HTTP/1.1 server on a free loopback port; each path answers as its ``routes`` handler says."""

    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> Loopback:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):  # Python 3.11's wait_closed does not wait for handlers
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def paths(self) -> list[str]:
        return [seen.target for seen in self.seen]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            target = head[0].split(" ")[1]
            headers = dict(line.split(":", 1) for line in head[1:] if line)
            seen = Seen(target, {k.strip().lower(): v.strip() for k, v in headers.items()})
            self.seen.append(seen)
            handler = self.routes.get(target) or self.routes.get(target.split("?")[0]) or reply(404, b"no")
            await handler(seen, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


def head_bytes(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(
    status: int, body: bytes, content_type: str | None = "text/html; charset=utf-8", **extra: str
) -> Handler:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        headers = {"Content-Length": str(len(body)), "Connection": "close"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        writer.write(head_bytes(status, headers) + body)
        await writer.drain()

    return handler


def redirect(location: str, status: int = 302, **extra: str) -> Handler:
    return reply(status, b"", Location=location, **extra)


def endless(chunk: bytes, pause_s: float = 0.0, content_type: str = "text/plain") -> Handler:
    """A body that never ends: only the reader's caps can stop it."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(head_bytes(200, {"Content-Type": content_type, "Connection": "close"}))
        while True:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause_s)

    return handler


class FakeDNS:
    """Names that exist only here; records every lookup."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.table.get(host, [])


def only(*addresses: str) -> Callable[[str], bool]:
    return set(addresses).__contains__


def loopback_or_default(address: str) -> bool:
    """The default policy, plus 127.0.0.1 so the test server can be the first hop."""
    return address == "127.0.0.1" or address_allowed(address)


LOOPBACK_ONLY = only("127.0.0.1")
NAMES = {"docs.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}
DNS = FakeDNS(NAMES)  # shared (test_toolbox uses it): tests that count lookups make their own
