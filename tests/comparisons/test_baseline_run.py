"""A chatroom turn's single-model baseline, asserted at the HTTP seam: what the loopback upstream is asked.

The panel's seats, judge and writer and the baseline are all models of the loopback upstream (the endpoint
``fake``), so every request each of them makes is recorded there.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.runs import run_task
from apps.chat.services import turn_cancel, turn_start
from apps.comparisons.models import BaselineChoice, Comparison
from apps.comparisons.services import baseline_tasks
from apps.panels.models import Panel
from tests.chat.conftest import Room
from tests.comparisons.conftest import done_turn, fake_panel
from tests.fakes.upstream import FakeUpstream, ModelScript

SOLO = "Solo_answer_zq7 is what the single model says, and nobody in the panel may read it."
PROMPT = "Which database suits a small team?"

pytestmark = pytest.mark.django_db(transaction=True)


def _messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(message["role"], message["content"]) for message in body["messages"]]


async def _panel_with_history(room: Room, *, enabled: bool = True, model: str = "fake/solo") -> Panel:
    def make() -> Panel:
        panel = fake_panel(room.user)
        done_turn(room.conversation, panel=panel, position=1, final="Earlier fused answer.")
        BaselineChoice.objects.create(user_id=room.user.pk, panel=panel, enabled=enabled, model_id=model)
        return panel

    return await sync_to_async(make)()


async def _run_to_the_end(turn_id: int) -> None:
    task = run_task(turn_id)
    tasks = [t for t in [task, *baseline_tasks()] if t is not None]
    async with asyncio.timeout(20):
        await asyncio.gather(*tasks)


async def _comparison(turn_id: int) -> Comparison:
    return await sync_to_async(Comparison.objects.get)(turn_id=turn_id)


async def test_the_single_model_gets_the_panels_prompt_and_history_and_the_judge_and_writer_never_see_it(
    room: Room, endpoint: FakeUpstream
) -> None:
    endpoint.script("solo", ModelScript(text=SOLO, cost=0.0042))
    panel = await _panel_with_history(room)

    turn = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
    await _run_to_the_end(turn.pk)

    solo = endpoint.requests_for("solo")
    assert len(solo) == 1
    expected = [("user", "Question 1"), ("assistant", "Earlier fused answer."), ("user", PROMPT)]
    assert _messages(solo[0].body) == expected
    seat = endpoint.requests_for("seat-one")[0].body
    # Asked exactly as a seat without a system prompt of its own is asked, minus the tools.
    assert _messages(seat) == expected
    assert solo[0].body["max_tokens"] == seat["max_tokens"]
    assert "tools" not in solo[0].body
    judge_and_writer = endpoint.requests_for("judge") + endpoint.requests_for("writer")
    assert judge_and_writer
    for request in judge_and_writer:
        text = json.dumps(request.body)
        assert "Solo_answer_zq7" not in text
        assert "solo" not in text
    comparison = await _comparison(turn.pk)
    assert comparison.status == Comparison.Status.DONE
    assert comparison.text == SOLO
    assert comparison.model_id == "fake/solo"
    assert comparison.cost == pytest.approx(0.0042)
    assert comparison.completion_tokens > 0


async def test_the_panels_writer_is_the_single_model_when_none_is_chosen(
    room: Room, endpoint: FakeUpstream
) -> None:
    panel = await _panel_with_history(room, model="")

    turn = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
    await _run_to_the_end(turn.pk)

    writer_requests = endpoint.requests_for("writer")
    # One as the panel's writer (the answers in its prompt), one as the baseline (the bare question).
    assert len(writer_requests) == 2
    bare = [r for r in writer_requests if _messages(r.body)[-1] == ("user", PROMPT)]
    assert len(bare) == 1
    comparison = await _comparison(turn.pk)
    assert comparison.model_id == "fake/writer"
    assert comparison.status == Comparison.Status.DONE


async def test_with_the_option_off_no_single_model_is_asked_and_no_comparison_is_made(
    room: Room, endpoint: FakeUpstream
) -> None:
    panel = await _panel_with_history(room, enabled=False)

    turn = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
    await _run_to_the_end(turn.pk)

    assert endpoint.requests_for("solo") == []
    assert not await sync_to_async(Comparison.objects.filter(turn_id=turn.pk).exists)()


async def test_a_failing_single_model_fails_the_comparison_and_leaves_the_turn_alone(
    room: Room, endpoint: FakeUpstream
) -> None:
    endpoint.script("solo", ModelScript(error_status=400, error_message="Solo_refused"))
    panel = await _panel_with_history(room)

    turn = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
    await _run_to_the_end(turn.pk)

    comparison = await _comparison(turn.pk)
    assert comparison.status == Comparison.Status.FAILED
    assert "fake/solo failed (400)" in comparison.error
    assert comparison.cost == 0
    assert (await room.turn(turn.pk)).status == "done"


async def test_cancelling_the_turn_stops_the_single_models_call(room: Room, endpoint: FakeUpstream) -> None:
    seat_hold, solo_hold = threading.Event(), threading.Event()
    endpoint.script("seat-one", ModelScript(holds={1: seat_hold}))
    endpoint.script("solo", ModelScript(text=SOLO, holds={2: solo_hold}))
    panel = await _panel_with_history(room)
    try:
        turn = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
        async with asyncio.timeout(10):
            while not endpoint.requests_for("solo"):
                await asyncio.sleep(0.02)
        await turn_cancel(user=room.user, turn_id=turn.pk)
        async with asyncio.timeout(10):
            await asyncio.gather(*baseline_tasks())
    finally:
        seat_hold.set()
        solo_hold.set()

    comparison = await _comparison(turn.pk)
    assert comparison.status == Comparison.Status.CANCELLED
    assert comparison.text.startswith("Solo_answer_zq7")  # what streamed is kept
    assert comparison.text != SOLO


async def test_a_regenerated_turn_gets_a_baseline_of_its_own(room: Room, endpoint: FakeUpstream) -> None:
    from apps.chat.services import turn_regenerate

    endpoint.script("solo", ModelScript(text=SOLO))
    panel = await _panel_with_history(room)
    first = await turn_start(user=room.user, conversation=room.conversation, prompt=PROMPT, panel=panel)
    await _run_to_the_end(first.pk)

    again = await turn_regenerate(user=room.user, conversation_id=room.conversation.pk, turn_id=first.pk)
    await _run_to_the_end(again.pk)

    assert again.pk != first.pk
    assert (await _comparison(again.pk)).text == SOLO
    assert len(endpoint.requests_for("solo")) == 2
