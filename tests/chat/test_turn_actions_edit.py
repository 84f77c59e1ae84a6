"""Editing the last prompt and sending it again: a new version of the turn with the edited prompt and the same
panel, the earlier version kept."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import Turn
from tests.chat.conftest import Room, turn_ended

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_edited_prompt_runs_as_a_new_version_and_the_old_one_is_kept(room: Room) -> None:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Compare Rust and Go", "panel": room.panel.pk})
    first = await socket.receive_until(turn_ended())
    assert "data-turn-edit" in first["html"]
    assert (
        f'<template id="turn-{first["turn"]}-prompt-source">Compare Rust and Go</template>' in first["html"]
    )

    await socket.send({"type": "edit", "turn": first["turn"], "prompt": "Compare Rust and Zig"})
    # The new version's first snapshot; a run of models without a pause may have ended within its window.
    started = await socket.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] != first["turn"])
    ended = started if turn_ended()(started) else await socket.receive_until(turn_ended(started["turn"]))
    await socket.close()

    assert ended["status"] == "done" and "Compare Rust and Zig" in ended["html"]
    rows = await sync_to_async(
        lambda: list(Turn.objects.order_by("version").values_list("position", "version", "shown", "prompt"))
    )()
    assert rows == [(1, 1, False, "Compare Rust and Go"), (1, 2, True, "Compare Rust and Zig")]


async def test_an_empty_edit_is_refused_and_nothing_runs(room: Room) -> None:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Hello", "panel": room.panel.pk})
    first = await socket.receive_until(turn_ended())
    await socket.send({"type": "edit", "turn": first["turn"], "prompt": "   "})
    error = await socket.receive()
    await socket.close()
    assert error == {"type": "error", "message": "Type a prompt first: an empty message cannot be sent."}
    assert await sync_to_async(Turn.objects.count)() == 1
