"""Fixtures for the chatroom tests: users, logged-in sockets on the full ASGI application, frame helpers."""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from apps.chat.models import Conversation, Turn
from apps.chat.services import conversation_create, turn_create
from apps.panels.models import Panel, PanelMember
from tests.fakes.upstream import FakeUpstream, ModelScript

if TYPE_CHECKING:
    from apps.chat.recorder import TurnRecorder

ORIGIN = b"http://localhost"
# The Host a browser on ORIGIN sends: the socket's origin check compares the two (apps/chat/origin.py).
HOST = b"localhost"
FRAME_TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _fast_models(settings: Any) -> None:
    settings.DEMO_MODEL_DELAY = 0
    settings.CHAT_FLUSH_SECONDS = 0.05
    settings.CHAT_SNAPSHOT_TIMEOUT_SECONDS = 1.0


def user_make(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password="a long enough pass phrase")


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def demo_panel() -> Panel:
    """The demo preset (transactional tests find the presets in place too: see tests/conftest.py)."""
    return Panel.objects.get(owner=None, slug="demo")


def panel_make(owner: Any, seats: list[str]) -> Panel:
    """A saved panel of ``owner`` with these seats, the demo judge and writer."""
    panel = Panel.objects.create(
        owner=owner, name="Mixed", slug="mixed", judge_model="demo/judge", writer_model="demo/writer"
    )
    for position, model in enumerate(seats, start=1):
        PanelMember.objects.create(panel=panel, position=position, model_id=model)
    return panel


@pytest.fixture
def endpoint(settings: Any, fake_upstream: FakeUpstream) -> FakeUpstream:
    """The loopback upstream as the endpoint ``fake`` (models ``fake/<script>``), without retries."""
    settings.FUSIONROOM_ENDPOINTS = {"fake": fake_upstream.base_url}
    settings.FUSIONROOM_ENDPOINT_KEYS = {}
    settings.PROVIDER_MAX_RETRIES = 0
    return fake_upstream


@dataclass
class Socket:
    """A WebSocket client of the full application with helpers to read its frames."""

    communicator: WebsocketCommunicator
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.communicator.receive_from(timeout=timeout))
        self.frames.append(frame)
        return frame

    async def receive_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                if predicate(frame):
                    return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


def turn_ended(turn_id: int | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(frame: dict[str, Any]) -> bool:
        return (
            frame.get("type") in ("snapshot", "html")
            and frame.get("status") not in (None, "running")
            and (turn_id is None or frame.get("turn") == turn_id)
        )

    return check


def application() -> Any:
    from fusionroom.asgi import application

    return application


async def socket_open(
    conversation_id: int | str,
    *,
    cookie: str | None,
    origin: bytes | None = ORIGIN,
    app: Any = None,
) -> tuple[Socket, bool, Any]:
    headers = [(b"host", HOST)]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(
        app or application(), f"/ws/conversations/{conversation_id}/", headers=headers
    )
    connected, code = await communicator.connect(timeout=FRAME_TIMEOUT)
    return Socket(communicator), connected, code


@pytest.fixture
async def no_leftover_runs() -> AsyncIterator[None]:
    """Cancel runs a failing test left behind, so they do not write into the next test's database."""
    yield
    from apps.chat.recorder import recorders_live

    recorders = recorders_live()
    for recorder in recorders:
        recorder.cancel()
    tasks = [recorder.task for recorder in recorders if recorder.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=5)


@dataclass
class Room:
    """One user's conversation and a way to open sockets on it."""

    user: AbstractBaseUser
    cookie: str
    conversation: Conversation
    panel: Panel

    async def open(self, **kwargs: Any) -> Socket:
        socket, connected, _code = await socket_open(self.conversation.pk, cookie=self.cookie, **kwargs)
        assert connected
        hello = await socket.receive()
        assert hello["type"] == "hello"
        return socket

    async def turn(self, turn_id: int) -> Turn:
        return await sync_to_async(Turn.objects.get)(pk=turn_id)


@pytest.fixture
async def room(transactional_db: None, no_leftover_runs: None) -> Room:
    def make() -> Room:
        user = user_make("alice")
        return Room(
            user=user,
            cookie=session_cookie(user),
            conversation=conversation_create(owner=user),
            panel=demo_panel(),
        )

    return await sync_to_async(make)()


@pytest.fixture
async def stranger(transactional_db: None) -> tuple[AbstractBaseUser, str]:
    def make() -> tuple[AbstractBaseUser, str]:
        user = user_make("mallory")
        return user, session_cookie(user)

    return await sync_to_async(make)()


async def held_panel(room: Room, endpoint: FakeUpstream, *holds: int) -> tuple[Panel, list[threading.Event]]:
    """A panel of ``room``'s user with one seat, ``fake/held``, and the demo judge and writer. The seat pauses
    before each of these content chunks until the test sets that chunk's event (returned in the same order):
    a run is "still going" because the test holds it, not because the model is slow enough."""
    events = [threading.Event() for _ in holds]
    endpoint.script("held", ModelScript(holds=dict(zip(holds, events, strict=True))))
    panel = await sync_to_async(panel_make)(room.user, ["fake/held"])
    return panel, events


class EventFeed:
    """A run's event source driven by the test: each event goes out when the test puts it, so a test waits
    on what happened, never on a model's pace. ``None`` ends the source; ``closed`` says it was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def put(self, *events: Any) -> None:
        for event in events:
            self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[Any]:
        try:
            while (event := await self.queue.get()) is not None:
                yield event
        finally:
            self.closed = True


async def recording(room: Room, feed: EventFeed) -> tuple[Turn, TurnRecorder, Socket, dict[str, Any]]:
    """A viewer on ``room``, then a turn recorded from ``feed`` (its ``TurnRecorder``); the viewer's first
    snapshot of it, which comes before anything the test feeds after this returns."""
    from apps.chat.recorder import TurnRecorder

    viewer = await room.open()
    turn = await turn_make(room)
    recorder = TurnRecorder(turn=turn)
    await recorder.start(feed.events())
    snapshot = await viewer.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    return turn, recorder, viewer, snapshot


async def turn_make(room: Room, prompt: str = "Recorded") -> Turn:
    """A running turn of ``room``'s conversation on its panel, with no run yet."""

    def make() -> Turn:
        snapshot = room.panel.snapshot()
        return turn_create(conversation=room.conversation, prompt=prompt, panel_snapshot=snapshot)

    return await sync_to_async(make)()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


_STREAM = re.compile(
    r'<div class="stream(?: reasoning-text)?" id="turn-(?P<turn>\d+)-'
    r'(?P<key>seat-\d+(?:-reasoning)?|final)-text" data-offset="(?P<offset>\d+)">'
    r"(?P<text>.*?)</div>",
    re.S,
)


def deltas_of(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The text deltas a frame carries, in order (a ``deltas`` frame's; none for any other frame)."""
    return frame["deltas"] if frame.get("type") == "deltas" else []


def streamed_past(offset: int) -> Callable[[dict[str, Any]], bool]:
    """A frame with a delta of an answer (not reasoning) starting past ``offset``."""

    def check(frame: dict[str, Any]) -> bool:
        return any(d["offset"] > offset and not d.get("reasoning") for d in deltas_of(frame))

    return check


def delta_key(delta: dict[str, Any]) -> str:
    """``seat-<n>``, ``seat-<n>-reasoning`` or ``final``, as in the streams' element ids."""
    key = "final" if delta.get("final") else f"seat-{delta['seat']}"
    return f"{key}-reasoning" if delta.get("reasoning") else key


class Reassembler:
    """Rebuilds each live text of a turn the way room.js does; counts what arrives out of order.

    ``strict``: a delta that does not start exactly where its text ends (a gap or a repeat) fails the test.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.texts: dict[str, str] = {}
        self.gaps = 0
        self.duplicates = 0
        self.strict = strict
        # How many deltas each ``deltas`` frame carried.
        self.frame_sizes: list[int] = []

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("snapshot", "html"):
            for match in _STREAM.finditer(frame["html"]):
                text = html.unescape(match["text"])
                assert len(text) == int(match["offset"]), "a stream's data-offset must be its length"
                self.texts[match["key"]] = text
        deltas = deltas_of(frame)
        if deltas:
            self.frame_sizes.append(len(deltas))
        for delta in deltas:
            key = delta_key(delta)
            have = self.texts.get(key, "")
            if self.strict:
                assert delta["offset"] == len(have), f"{key}: a delta at {delta['offset']}, {len(have)} held"
            if delta["offset"] > len(have):
                self.gaps += 1
                continue
            if delta["offset"] < len(have):
                self.duplicates += 1
            self.texts[key] = have + delta["text"][len(have) - delta["offset"] :]
