"""Failures a person must understand: a seat's provider error, every seat failing, a dead process's turn."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from apps.chat.models import PanelAnswer, Turn
from apps.chat.services import turn_create
from tests.chat.conftest import Room, panel_make, socket_open, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_failing_seat_shows_failed_with_the_provider_error_and_the_run_goes_on(
    room: Room, endpoint: FakeUpstream
) -> None:
    endpoint.script("broke", ModelScript(error_status=402, error_message="Insufficient credits on this key"))
    # The third seat waits for the test after its first words: the failure must show while the run goes on.
    going_on = threading.Event()
    endpoint.script("held", ModelScript(holds={1: going_on}))
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/broke", "fake/held"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Tabs or spaces?", "panel": panel.pk})
    failed_column = await socket.receive_until(
        lambda f: (
            f["type"] in ("html", "snapshot")
            and 'data-seat="2"' in f["html"]
            and 'data-status="failed"' in f["html"]
        )
    )
    assert failed_column["status"] == "running"
    assert "Insufficient credits on this key" in failed_column["html"]
    assert 'data-model="fake/broke"' in failed_column["html"]
    going_on.set()
    ended = await socket.receive_until(turn_ended())
    await socket.close()
    assert ended["status"] == "done"
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=ended["turn"], seat=2)
    assert answer.status == "failed" and answer.status_code == 402
    assert "Insufficient credits" in answer.error
    assert (await room.turn(ended["turn"])).final_text


async def test_every_seat_failing_fails_the_turn_with_a_reason(room: Room, endpoint: FakeUpstream) -> None:
    endpoint.script("down", ModelScript(error_status=503, error_message="Service unavailable"))
    panel = await sync_to_async(panel_make)(room.user, ["fake/down", "fake/down"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Anyone there?", "panel": panel.pk})
    ended = await socket.receive_until(turn_ended())
    await socket.close()
    assert ended["status"] == "failed"
    turn = await room.turn(ended["turn"])
    assert turn.status == "failed" and turn.failure_reason == "all_panels_failed"
    assert turn.error_message and turn.error_message in ended["html"]


def stale_turn(room: Room) -> Turn:
    turn = turn_create(
        conversation=room.conversation, prompt="Left behind", panel_snapshot=room.panel.snapshot()
    )
    PanelAnswer.objects.filter(turn=turn, seat=1).update(status="streaming", content="Half of it")
    Turn.objects.filter(pk=turn.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=120), recorder_channel="specific.gone!nowhere"
    )
    return turn


async def test_a_turn_whose_heartbeat_went_stale_becomes_interrupted_on_connect(room: Room) -> None:
    turn = await sync_to_async(stale_turn)(room)
    socket, _connected, _code = await socket_open(room.conversation.pk, cookie=room.cookie)
    assert await socket.receive() == {"type": "hello", "running": []}
    await socket.send({"type": "resync", "turn": turn.pk})
    snapshot = await socket.receive()
    await socket.close()
    assert snapshot["status"] == "interrupted" and "Half of it" in snapshot["html"]
    turn = await room.turn(turn.pk)
    assert turn.status == "interrupted"
    seat = await sync_to_async(PanelAnswer.objects.get)(turn=turn, seat=1)
    assert seat.content == "Half of it"


async def test_a_snapshot_request_to_a_vanished_run_is_answered_from_the_database(
    room: Room, settings: Any
) -> None:
    settings.CHAT_SNAPSHOT_TIMEOUT_SECONDS = 0.2
    settings.CHAT_STALE_AFTER_SECONDS = 0.1
    turn = await sync_to_async(stale_turn)(room)
    await sync_to_async(Turn.objects.filter(pk=turn.pk).update)(heartbeat_at=timezone.now())
    socket = await room.open()
    assert socket.frames[0]["running"] == [turn.pk]
    await socket.send({"type": "resync", "turn": turn.pk})
    snapshot = await socket.receive()
    await socket.close()
    assert snapshot["type"] == "snapshot" and snapshot["status"] == "interrupted"
