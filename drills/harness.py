"""What the drills stand on: Daphne processes, the loopback upstream, sockets that time every delta, rows.

- ``server_start`` runs ``daphne -b 127.0.0.1 -p <free port> fusionroom.asgi:application`` with the drills'
  environment and waits until it answers; ``server_stop`` ends it (SIGTERM, then SIGKILL), ``server_kill``
  is the ``kill -9`` of drill 2.
- ``sign_up`` creates the drills' user through the real sign-up page (CSRF token from the form, the
  browser's ``Origin``) and returns the session cookie, which every process accepts (sessions live in the
  shared database).
- ``Viewer`` is a real WebSocket client of one process. It reassembles every live text by offset, as
  ``static/js/room.js`` does, and records when each piece of text arrived, so a drill can tell what a
  person watching had seen at any moment.
- Rows the pages do not make quickly (panels with the drills' models, empty conversations) and the saved
  state of a turn go through the ORM of this process, on the same database.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
READY_PATH = "/accounts/login/"
START_TIMEOUT_S = 30.0
START_ATTEMPTS = 3
FRAME_MAX_BYTES = 2**22


class DrillFailed(Exception):
    """What did not hold, in one line."""


# --- processes -------------------------------------------------------------------------------------------


@dataclass
class Server:
    """One Daphne process: its name in the drills (A, B), its port and the file its output goes to."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_start(name: str, *, env: dict[str, str], log_dir: Path) -> Server:
    """A Daphne serving the app on a free loopback port, once it answers ``READY_PATH``."""
    daphne = Path(sys.executable).with_name("daphne")
    log_path = log_dir / f"daphne-{name}.log"
    # A free port can be taken between asking for it and Daphne binding it: then try another one.
    for _attempt in range(START_ATTEMPTS):
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(daphne), "-b", "127.0.0.1", "-p", str(port), "fusionroom.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(name=name, port=port, process=process, log_path=log_path)
        if _serving(server):
            return server
    raise DrillFailed(f"Daphne {name} did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


def _serving(server: Server) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        try:
            with urllib.request.urlopen(f"{server.url}{READY_PATH}", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    server_kill(server)
    raise DrillFailed(f"Daphne {server.name} did not answer within {START_TIMEOUT_S:g} s")


def server_stop(server: Server) -> None:
    if server.alive():
        server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server_kill(server)


def server_kill(server: Server) -> None:
    """``kill -9``: no shutdown code runs, nothing is flushed."""
    if server.alive():
        os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


# --- pages ---------------------------------------------------------------------------------------------

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def http_client(server: Server, cookie: str = "") -> httpx.AsyncClient:
    headers = {"Cookie": cookie} if cookie else {}
    # Loopback only: never a proxy from the environment.
    return httpx.AsyncClient(base_url=server.url, headers=headers, trust_env=False, timeout=10.0)


async def sign_up(server: Server, *, username: str, password: str) -> str:
    """Sign up through the real page (CSRF token and ``Origin`` as a browser sends them): a session cookie."""
    async with http_client(server) as client:
        page = await client.get("/accounts/signup/")
        token = _CSRF_FIELD.search(page.text)
        if page.status_code != 200 or token is None:
            raise DrillFailed(f"the sign-up page answered {page.status_code} without a CSRF token")
        reply = await client.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password1": password,
                "password2": password,
            },
            headers={"Origin": server.url, "Referer": f"{server.url}/accounts/signup/"},
        )
        session = client.cookies.get("sessionid")
        if reply.status_code != 302 or not session:
            raise DrillFailed(f"signing up answered {reply.status_code} and no session")
        return f"sessionid={session}"


# --- sockets ---------------------------------------------------------------------------------------------

_STREAM = re.compile(
    r'<div class="stream" id="turn-(?P<turn>\d+)-(?P<key>seat-\d+|final)-text" data-offset="(?P<offset>\d+)">'
    r"(?P<text>.*?)</div>",
    re.S,
)


@dataclass
class Column:
    """One live text as a viewer rebuilt it, and when each piece of it arrived."""

    text: str = ""
    # (monotonic arrival time, length of the text once that piece was added), in arrival order.
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    deltas: int = 0

    def extend(self, offset: int, text: str, at: float) -> str:
        """Apply text that starts at ``offset``: ``"ok"``, ``"gap"`` (not applied) or ``"duplicate"``."""
        have = len(self.text)
        if offset > have:
            return "gap"
        fresh = text[have - offset :]
        if fresh:
            self.text += fresh
            self.arrivals.append((at, len(self.text)))
        return "duplicate" if offset < have else "ok"

    def seen_at(self, position: int) -> float | None:
        """When the character at ``position`` arrived (None if it never did)."""
        for at, end in self.arrivals:
            if position < end:
                return at
        return None


class Viewer:
    """A person's socket on one process, reading every frame in the background."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.hello: dict[str, Any] | None = None
        self.turns: list[int] = []
        self.status: dict[int, str] = {}
        self.columns: dict[tuple[int, str], Column] = {}
        self.errors: list[str] = []
        self.gaps = 0
        self.duplicates = 0
        self.closed = False
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, server: Server, conversation_id: int, cookie: str) -> Viewer:
        try:
            ws = await connect(
                f"{server.ws_url}/ws/conversations/{conversation_id}/",
                origin=Origin(server.url),
                additional_headers={"Cookie": cookie},
                proxy=None,
                # No keep-alive pings from this side: an idle socket must stay open on the server's terms.
                ping_interval=None,
                open_timeout=10,
                max_size=FRAME_MAX_BYTES,
            )
        except InvalidStatus as refused:
            status = refused.response.status_code
            raise DrillFailed(f"{server.name} refused a new socket: HTTP {status}") from None
        viewer = cls(server.name, ws)
        viewer._reader = asyncio.create_task(viewer._read(), name=f"viewer-{server.name}")
        await viewer.until(lambda: viewer.hello is not None, 10, "the hello frame")
        return viewer

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(payload))

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._apply(json.loads(raw), time.monotonic())
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    def _apply(self, frame: dict[str, Any], at: float) -> None:
        kind = frame.get("type")
        if kind == "hello":
            self.hello = frame
        elif kind == "error":
            self.errors.append(str(frame.get("message")))
        elif kind == "deltas":
            for delta in frame["deltas"]:
                key = "final" if delta.get("final") else f"seat-{delta['seat']}"
                if delta.get("reasoning"):
                    key += "-reasoning"
                column = self.column(int(delta["turn"]), key)
                column.deltas += 1
                self._count(column.extend(int(delta["offset"]), str(delta["text"]), at))
        elif kind in ("snapshot", "html"):
            turn = int(frame["turn"])
            if turn not in self.status:
                self.turns.append(turn)
            self.status[turn] = str(frame["status"])
            for match in _STREAM.finditer(frame["html"]):
                column = self.column(int(match["turn"]), match["key"])
                self._count(column.extend(0, html.unescape(match["text"]), at))

    def _count(self, outcome: str) -> None:
        if outcome == "gap":
            self.gaps += 1
        elif outcome == "duplicate":
            self.duplicates += 1

    def column(self, turn: int, key: str) -> Column:
        return self.columns.setdefault((turn, key), Column())

    def text(self, turn: int, key: str) -> str:
        column = self.columns.get((turn, key))
        return column.text if column else ""

    def ended(self, turn: int) -> bool:
        return self.status.get(turn) not in (None, "running")

    async def until(self, check: Callable[[], bool], within: float, what: str) -> None:
        """Wait for ``check()``; ``DrillFailed`` naming ``what`` if the socket closes or ``within`` s pass."""
        try:
            async with asyncio.timeout(within):
                while not check():
                    if self.closed:
                        raise DrillFailed(
                            f"the socket on {self.name} closed ({self.ws.close_code}) before {what}"
                        )
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise DrillFailed(f"{what} not seen on {self.name} within {within:g} s") from None

    async def new_turn(self, known: set[int], within: float = 10.0) -> int:
        """The first turn this viewer saw that is not in ``known`` (a run someone just started)."""
        start = len(self.errors)

        def appeared() -> bool:
            if len(self.errors) > start:
                raise DrillFailed(f"{self.name} got an error frame: {self.errors[-1]}")
            return any(turn not in known for turn in self.turns)

        await self.until(appeared, within, "the new turn")
        return next(turn for turn in self.turns if turn not in known)


# --- rows ----------------------------------------------------------------------------------------------


@dataclass
class SavedSeat:
    status: str
    content: str
    error: str


@dataclass
class SavedTurn:
    status: str
    failure_reason: str
    error_message: str
    final_text: str
    totals: dict[str, Any]
    seats: dict[int, SavedSeat]


@database_sync_to_async
def panel_create(
    *, username: str, name: str, seats: list[str], judge: str, writer: str, options: dict[str, Any]
) -> int:
    from django.contrib.auth import get_user_model

    from apps.panels.models import Panel, PanelMember

    owner = get_user_model().objects.get(username=username)
    panel = Panel.objects.create(
        owner=owner, name=name, slug=name.lower(), judge_model=judge, writer_model=writer, options=options
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=position, model_id=model)
        for position, model in enumerate(seats, start=1)
    )
    return panel.pk


@database_sync_to_async
def conversation_new(*, username: str) -> int:
    from django.contrib.auth import get_user_model

    from apps.chat.services import conversation_create

    return conversation_create(owner=get_user_model().objects.get(username=username)).pk


@database_sync_to_async
def turn_saved(turn_id: int) -> SavedTurn:
    from apps.chat.models import Turn

    turn = Turn.objects.get(pk=turn_id)
    return SavedTurn(
        status=turn.status,
        failure_reason=turn.failure_reason,
        error_message=turn.error_message,
        final_text=turn.final_text,
        totals=turn.totals or {},
        seats={
            answer.seat: SavedSeat(status=answer.status, content=answer.content, error=answer.error)
            for answer in turn.answers.order_by("seat")
        },
    )
