"""Only the owner of a conversation can open its socket; strangers, visitors and other sites cannot."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from tests.chat.conftest import HOST, ORIGIN, Room, application, held_panel, socket_open
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_closed_without_data(communicator: WebsocketCommunicator, code: int) -> None:
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}
    assert await communicator.receive_nothing(timeout=0.1)


async def test_the_owner_connects_and_is_told_what_is_running(room: Room) -> None:
    socket = await room.open()
    assert socket.frames == [{"type": "hello", "running": []}]
    await socket.close()


async def test_a_stranger_is_closed_with_4404_and_gets_no_data(room: Room, stranger: tuple[Any, str]) -> None:
    socket, connected, _code = await socket_open(room.conversation.pk, cookie=stranger[1])
    assert connected
    await assert_closed_without_data(socket.communicator, 4404)


async def test_an_unknown_conversation_looks_the_same_as_a_strangers(room: Room) -> None:
    socket, connected, _code = await socket_open(999_999, cookie=room.cookie)
    assert connected
    await assert_closed_without_data(socket.communicator, 4404)


async def test_an_anonymous_visitor_is_closed_with_4401(room: Room) -> None:
    socket, connected, _code = await socket_open(room.conversation.pk, cookie=None)
    assert connected
    await assert_closed_without_data(socket.communicator, 4401)


@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", None])
async def test_a_foreign_or_missing_origin_is_refused_at_handshake(room: Room, origin: bytes | None) -> None:
    headers = [(b"host", HOST), (b"cookie", room.cookie.encode())]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application(), f"/ws/conversations/{room.conversation.pk}/", headers)
    connected, _code = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()


async def test_the_allowed_origin_is_accepted(room: Room) -> None:
    socket, connected, _code = await socket_open(room.conversation.pk, cookie=room.cookie, origin=ORIGIN)
    assert connected
    await socket.close()


async def test_a_stranger_cannot_cancel_or_resync_someone_elses_turn(
    room: Room, stranger: tuple[Any, str], endpoint: FakeUpstream
) -> None:
    from asgiref.sync import sync_to_async

    from apps.chat.services import conversation_create

    panel, (release,) = await held_panel(room, endpoint, 3)
    owner = await room.open()
    await owner.send({"type": "send", "prompt": "Mine", "panel": panel.pk})
    started = await owner.receive_until(lambda f: f["type"] == "snapshot")

    own = await sync_to_async(conversation_create)(owner=stranger[0])
    intruder, connected, _code = await socket_open(own.pk, cookie=stranger[1])
    assert connected
    assert (await intruder.receive())["type"] == "hello"
    for kind in ("cancel", "resync"):
        await intruder.send({"type": kind, "turn": started["turn"]})
        frame = await intruder.receive()
        assert frame["type"] == "error" and "no such turn" in frame["message"].lower()
    # Held until now, so the run was certainly going while the stranger tried.
    release.set()
    ended = await owner.receive_until(lambda f: f.get("status") not in (None, "running"))
    assert ended["status"] == "done"
    await intruder.close()
    await owner.close()
