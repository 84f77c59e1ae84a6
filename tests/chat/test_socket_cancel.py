"""Cancel stops everything in flight, keeps what streamed and marks the turn cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer, Turn
from apps.chat.recorder import recorder_for
from apps.chat.runs import run_task
from tests.chat.conftest import Reassembler, Room, panel_make, streamed_past, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = pytest.mark.django_db(transaction=True)


async def test_cancel_stops_the_run_and_keeps_what_streamed(room: Room, settings: Any) -> None:
    settings.DEMO_MODEL_DELAY = 0.01
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Explain consensus protocols", "panel": room.panel.pk})
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    turn_id = started["turn"]
    texts = Reassembler()
    texts.apply(started)

    def streamed_some(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return streamed_past(20)(frame)

    await socket.receive_until(streamed_some)
    await socket.send({"type": "cancel", "turn": turn_id})

    def until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn_id)(frame)

    ended = await socket.receive_until(until_end, timeout=5)
    assert ended["status"] == "cancelled"
    assert 'data-turn-status="cancelled"' in ended["html"] and "data-cancel-turn" not in ended["html"]
    task = run_task(turn_id)
    if task is not None:
        await asyncio.wait_for(task, timeout=5)
    assert recorder_for(turn_id) is None

    turn = await room.turn(turn_id)
    answers = await sync_to_async(lambda: list(PanelAnswer.objects.filter(turn_id=turn_id)))()
    assert turn.status == Turn.Status.CANCELLED and turn.failure_reason == "cancelled" and turn.finished_at
    # Demo models cost nothing, even cut off mid-answer: the total is $0, not "unknown".
    assert turn.cost == 0.0 and turn.totals["usage"]["cost"] == 0.0
    assert "cost unknown" not in ended["html"]
    assert any(a.content for a in answers), "what streamed is kept"
    for answer in answers:
        assert answer.status in ("done", "cancelled")
        assert texts.texts[f"seat-{answer.seat}"].startswith(answer.content[:20])
    assert await socket.communicator.receive_nothing(timeout=0.3), "nothing streams after the cancel"
    await socket.close()


async def test_cancelling_a_finished_turn_changes_nothing(room: Room) -> None:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Quick one", "panel": room.panel.pk})
    ended = await socket.receive_until(turn_ended())
    await socket.send({"type": "cancel", "turn": ended["turn"]})
    again = await socket.receive()
    assert again["type"] == "snapshot" and again["status"] == "done"
    assert (await room.turn(ended["turn"])).status == "done"
    await socket.close()


async def test_cancelling_while_a_paid_judge_works_leaves_the_cost_unknown(
    room: Room, endpoint: FakeUpstream
) -> None:
    endpoint.script("judge", ModelScript(latency_s=10, comments=True))

    def make() -> int:
        panel = panel_make(room.user, ["demo/atlas"])
        panel.judge_model = "fake/judge"
        panel.save()
        return panel.pk

    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Quick one", "panel": await sync_to_async(make)()})
    # Shown by a fragment, or by the turn's first snapshot when the seat was done within its window.
    analysing = await socket.receive_until(
        lambda f: f["type"] in ("html", "snapshot") and "analysing" in f["html"]
    )
    await socket.send({"type": "cancel", "turn": analysing["turn"]})
    ended = await socket.receive_until(turn_ended(analysing["turn"]), timeout=5)
    await socket.close()

    assert ended["status"] == "cancelled"
    turn = await room.turn(ended["turn"])
    # The demo seat cost nothing; the judge was cut off while it may have been billing.
    assert turn.cost is None
    steps = {step["role"]: step for step in turn.totals["steps"]}
    assert steps["seat"]["usage"]["cost"] == 0.0
    assert steps["judge"]["status"] == "cancelled" and steps["judge"]["usage"]["cost"] is None
