"""Bad frames get an error frame the page can show; the socket and the server keep working."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.frames import MAX_FRAME_CHARS
from apps.chat.models import Turn
from apps.fusion.schemas import MAX_PROMPT_CHARS
from apps.panels.models import Panel, PanelMember
from tests.chat.conftest import Room, held_panel, turn_ended
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db(transaction=True)


def foreign_panel(owner: Any) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Mallory's", slug="mallorys", judge_model="demo/judge", writer_model="demo/writer"
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="demo/atlas")
    return panel


async def test_bad_frames_each_get_an_error_and_the_socket_keeps_working(
    room: Room, stranger: tuple[Any, str]
) -> None:
    mallorys_panel = await sync_to_async(foreign_panel)(stranger[0])
    socket = await room.open()
    panel = room.panel.pk
    bad: list[tuple[str, str]] = [
        ("not json at all", "not valid JSON"),
        ("x" * (MAX_FRAME_CHARS + 1), "too large"),
        (json.dumps([1, 2]), "Unknown message"),
        (json.dumps({"type": "launch_missiles"}), "Unknown message"),
        (json.dumps({"type": "send", "panel": room.panel.pk}), "lacks 'prompt'"),
        (json.dumps({"type": "send", "prompt": "hi", "panel": "demo"}), "panel"),
        (json.dumps({"type": "send", "prompt": "   \n ", "panel": panel}), "empty message"),
        (json.dumps({"type": "send", "prompt": "x" * (MAX_PROMPT_CHARS + 1), "panel": panel}), "limit"),
        (json.dumps({"type": "send", "prompt": "hi", "panel": 999_999}), "does not exist"),
        (json.dumps({"type": "send", "prompt": "hi", "panel": mallorys_panel.pk}), "does not exist"),
        (json.dumps({"type": "cancel", "turn": 999_999}), "no such turn"),
        (json.dumps({"type": "resync", "turn": 999_999}), "no such turn"),
        (json.dumps({"type": "send", "prompt": "hi", "panel": panel, "extra": 1}), "unexpected field"),
        (f'{{"type": "send", "prompt": "hi", "prompt": "x", "panel": {panel}}}', "'prompt' more than once"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ]
    for text, expected in bad:
        await socket.send(text)
        frame = await socket.receive()
        assert frame["type"] == "error", text[:80]
        assert expected.lower() in frame["message"].lower(), (text[:80], frame["message"])

    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive())["type"] == "error"

    assert await sync_to_async(Turn.objects.count)() == 0, "no bad frame started a run"
    await socket.send({"type": "send", "prompt": "Still there?", "panel": room.panel.pk})
    ended = await socket.receive_until(turn_ended())
    assert ended["status"] == "done"
    await socket.close()


async def test_a_second_send_while_a_run_is_going_is_refused(room: Room, endpoint: FakeUpstream) -> None:
    panel, (release,) = await held_panel(room, endpoint, 3)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "First", "panel": panel.pk})
    await socket.receive_until(lambda f: f["type"] == "snapshot")
    await socket.send({"type": "send", "prompt": "Second", "panel": panel.pk})
    error = await socket.receive_until(lambda f: f["type"] == "error")
    assert "already in progress" in error["message"]
    release.set()
    await socket.receive_until(turn_ended())
    await socket.close()
    assert await sync_to_async(Turn.objects.count)() == 1


async def test_a_panel_that_cannot_run_here_is_refused_with_the_reason(room: Room, settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    quality = await sync_to_async(Panel.objects.get)(owner=None, slug="quality")
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "hi", "panel": quality.pk})
    error = await socket.receive()
    assert error["type"] == "error" and "OPENROUTER_API_KEY" in error["message"]
    await socket.close()


async def test_a_panel_the_chooser_disables_is_refused_by_the_socket_with_the_same_reason(room: Room) -> None:
    def ghost_panel() -> Panel:
        panel = Panel.objects.create(
            owner_id=room.user.pk, name="Ghost", slug="ghost", judge_model="demo/judge", writer_model="demo/x"
        )
        PanelMember.objects.create(panel=panel, position=1, model_id="demo/atlas")
        return panel

    panel = await sync_to_async(ghost_panel)()
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "hi", "panel": panel.pk})
    error = await socket.receive()
    assert error["type"] == "error"
    refusal = "The panel 'Ghost' cannot run here. Writer: There is no demo model called demo/x;"
    assert error["message"].startswith(refusal)
    await socket.close()
    assert not await sync_to_async(Turn.objects.exists)()
