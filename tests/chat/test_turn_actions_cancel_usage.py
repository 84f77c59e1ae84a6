"""A cancelled turn shows the tokens (and cost) of what did stream: a stream cut before the provider reported
usage is counted from its text, and says it is an estimate; demo models still cost nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer
from apps.chat.recorder import usage_estimate
from apps.chat.runs import run_task
from tests.chat.conftest import Room, streamed_past, turn_ended

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_estimate_counts_about_four_characters_a_token() -> None:
    usage = usage_estimate(prompt_chars=40, completion_chars=1601)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 401, 411)


async def test_a_cancelled_demo_run_reports_the_tokens_that_streamed_as_an_estimate(
    room: Room, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0.01
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Explain consensus protocols", "panel": room.panel.pk})
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    await socket.receive_until(streamed_past(200))
    await socket.send({"type": "cancel", "turn": started["turn"]})
    ended = await socket.receive_until(turn_ended(started["turn"]), timeout=5)
    task = run_task(started["turn"])
    if task is not None:
        await asyncio.wait_for(task, timeout=5)
    await socket.close()

    assert ended["status"] == "cancelled"
    turn = await room.turn(started["turn"])
    answers = await sync_to_async(lambda: list(PanelAnswer.objects.filter(turn_id=turn.pk)))()
    cut = [answer for answer in answers if answer.status == "cancelled" and answer.content]
    assert cut, "some seat was cut off mid-answer"
    for answer in cut:
        assert answer.usage_estimated
        assert answer.completion_tokens >= len(answer.content) // 4 > 0
        assert answer.cost == 0.0, "demo models cost nothing, estimated or not"
    assert turn.totals["estimated"] is True
    assert turn.totals["usage"]["total_tokens"] >= sum(a.completion_tokens for a in cut) > 0
    assert turn.cost == 0.0
    # The page says so: a total that is not zero, marked as an estimate, and each cut column's count.
    assert f"~{turn.totals['usage']['total_tokens']} tokens" in ended["html"]
    assert "(estimated)" in ended["html"] and "Total: " in ended["html"]
    assert "demo" in ended["html"]
