"""A run over the socket: a prompt in; every seat's text, the analysis and the fused answer out, as saved."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.chat.models import PanelAnswer
from apps.chat.recorder import TurnRecorder, conversation_group
from apps.chat.runs import run_task
from apps.chat.services import turns_reap_stale
from apps.fusion.schemas import (
    Analysis,
    AnalysisDone,
    AnalysisStarted,
    FinalDelta,
    FinalDone,
    FinalStarted,
    RunDone,
    SeatDelta,
    SeatDone,
    SeatStarted,
    Timings,
    Totals,
)
from apps.providers.base import Usage
from tests.chat.conftest import (
    EventFeed,
    Reassembler,
    Room,
    held_panel,
    panel_make,
    recording,
    turn_ended,
    turn_make,
    wait_for,
)
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = pytest.mark.django_db(transaction=True)

SEATS = ("demo/atlas", "demo/birch", "demo/cedar")
ANALYSIS = Analysis(
    consensus=["Both work"], contradictions=[], partial_coverage=[], unique_insights=[], blind_spots=[]
)
PROMPT = "Which is better for a small team, PostgreSQL or MySQL?"
# The turn's live region (templates/chat/_progress.html) and what it announces.
_ANNOUNCED = re.compile(
    r'id="turn-\d+-progress" role="status" aria-live="polite"[^>]*>'
    r'<span class="status-dot[^"]*" aria-hidden="true"></span>(?P<text>[^<]*)</span>'
)


def announced(frame: dict[str, Any]) -> str:
    """What the frame's live region announces (it is in every snapshot and every ``html`` frame)."""
    match = _ANNOUNCED.search(frame["html"])
    assert match is not None, "the frame has no live region"
    return match["text"]


async def answers_of(turn_id: int) -> list[PanelAnswer]:
    return await sync_to_async(lambda: list(PanelAnswer.objects.filter(turn_id=turn_id).order_by("seat")))()


async def run_to_end(room: Room, prompt: str = PROMPT) -> tuple[int, Reassembler, dict[str, Any]]:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": prompt, "panel": room.panel.pk})
    # The turn's first frame is its first snapshot, held for a window of frames: a run of models without a
    # pause may have ended within it, and that snapshot is then the turn's end.
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    turn_id = started["turn"]
    texts = Reassembler()

    def apply_until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn_id)(frame)

    ended = started if apply_until_end(started) else await socket.receive_until(apply_until_end)
    await socket.close()
    return turn_id, texts, ended


async def test_a_prompt_streams_every_seat_then_analysis_then_fused_answer(
    room: Room, endpoint: FakeUpstream
) -> None:
    # Three seats that wait for the test after their first words: none can have finished when the turn's
    # first snapshot is out (a model without a pause may start and finish within one window of frames, and
    # the page then gets its answer whole). So the rest of every seat's text, then the fused answer, reach
    # the page as they stream. That columns streaming together share a frame is shown step by step in
    # test_recorder.py.
    release = threading.Event()
    seats = ["fake/one", "fake/two", "fake/three"]
    for model in seats:
        endpoint.script(model.removeprefix("fake/"), ModelScript(holds={1: release}))
    panel = await sync_to_async(panel_make)(room.user, seats)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": PROMPT, "panel": panel.pk})
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    assert started["status"] == "running" and 'data-status="done"' not in started["html"]
    turn_id = started["turn"]
    # Every delta starts exactly where the page's text ends: no gap, no repeat.
    texts = Reassembler(strict=True)
    texts.apply(started)
    release.set()

    def apply_until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn_id)(frame)

    ended = await socket.receive_until(apply_until_end)
    await socket.close()
    assert ended["type"] == "snapshot" and ended["status"] == "done"

    turn = await room.turn(turn_id)
    answers = await answers_of(turn_id)
    assert turn.status == "done" and turn.phase == "finished" and turn.finished_at
    assert [a.model_id for a in answers] == seats
    for answer in answers:
        assert answer.status == "done" and len(answer.content.split()) > 2, "past the hold"
        assert texts.texts[f"seat-{answer.seat}"] == answer.content
        assert answer.completion_tokens > 0 and answer.duration_ms is not None
    assert turn.final_text and texts.texts["final"] == turn.final_text
    assert turn.analysis is not None and set(turn.analysis) >= {"consensus", "blind_spots"}
    assert turn.totals["usage"]["total_tokens"] > 0

    html = ended["html"]
    assert 'data-turn-status="done"' in html and 'data-section="analysis"' in html
    assert html.count('data-seat="') == 3 and 'data-model="fake/two"' in html
    assert 'data-section="final"' in html and "Consensus" in html and "Blind spots" in html
    conversation = await sync_to_async(lambda: type(room.conversation).objects.get(pk=room.conversation.pk))()
    assert conversation.title == PROMPT and conversation.last_panel_id == panel.pk


async def test_progress_is_announced_in_a_live_region_while_running(room: Room) -> None:
    # Fed step by step, each step waited for: every state is a frame of its own, so each announcement is a
    # fact (a real run's steps can come within one window of frames, and the page then shows only the last).
    feed = EventFeed()
    turn = await turn_make(room)  # on the demo panel: three seats
    socket = await room.open()
    recorder = TurnRecorder(turn=turn)
    await recorder.start(feed.events())
    snapshot = await socket.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    assert announced(snapshot) == "panel 0/3 done"
    feed.put(*(SeatStarted(seat=seat, model=model) for seat, model in enumerate(SEATS, start=1)))
    steps: list[tuple[Any, str]] = [
        *(
            (
                SeatDone(seat=seat, model=model, content="", usage=Usage(), timings=Timings()),
                f"panel {seat}/3 done",
            )
            for seat, model in enumerate(SEATS, start=1)
        ),
        (AnalysisStarted(model="demo/judge"), "analysing"),
        (AnalysisDone(analysis=ANALYSIS, raw="{}", usage=Usage(), timings=Timings()), "analysing"),
        (FinalStarted(model="demo/writer"), "writing"),
    ]
    started = await socket.receive_until(
        lambda f: 'data-seat="3" data-model="demo/cedar" data-status="streaming"' in f["html"]
    )
    assert (started["type"], announced(started)) == ("html", "panel 0/3 done")
    for event, expected in steps:
        feed.put(event)
        frame = await socket.receive()
        assert (frame["type"], frame["status"]) == ("html", "running"), frame
        assert announced(frame) == expected, event
    feed.put(FinalDone(content="", usage=Usage(), timings=Timings()), RunDone(totals=Totals()))
    ended = await socket.receive_until(turn_ended(turn.pk))
    await socket.close()
    assert announced(ended) == "done"


async def test_a_follow_up_sends_the_earlier_turns_as_history(room: Room) -> None:
    from apps.chat.services import fusion_request_for

    first_id, _texts, _ended = await run_to_end(room)
    second_id, _texts, ended = await run_to_end(room, "And for a team of fifty?")
    assert ended["status"] == "done"
    second = await room.turn(second_id)
    assert second.position == 2
    request = await sync_to_async(fusion_request_for)(turn=second)
    first = await room.turn(first_id)
    assert [(h.prompt, h.answer) for h in request.history] == [(PROMPT, first.final_text)]
    assert request.prompt == "And for a team of fifty?"


async def test_a_second_socket_sees_the_same_live_run(room: Room, settings: Any) -> None:
    settings.DEMO_MODEL_DELAY = 0.002
    watcher = await room.open()
    turn_id, texts, _ended = await run_to_end(room)
    seen = Reassembler()

    def apply_until_end(frame: dict[str, Any]) -> bool:
        seen.apply(frame)
        return turn_ended(turn_id)(frame)

    await watcher.receive_until(apply_until_end)
    await watcher.close()
    assert seen.texts == texts.texts and seen.gaps == 0


async def test_closing_the_socket_does_not_stop_the_run(room: Room, endpoint: FakeUpstream) -> None:
    panel, (release,) = await held_panel(room, endpoint, 5)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": PROMPT, "panel": panel.pk})
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    # The seat's first words reached the page (in that snapshot, or as deltas after it): it is streaming.
    texts = Reassembler()

    def streaming(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return bool(texts.texts.get("seat-1"))

    if not streaming(started):
        await socket.receive_until(streaming)
    await socket.close()
    task = run_task(started["turn"])
    assert task is not None and not task.done(), "the seat is held: the run is still going"
    release.set()
    await asyncio.wait_for(task, timeout=20)
    turn = await room.turn(started["turn"])
    answers = await answers_of(started["turn"])
    assert turn.status == "done" and turn.final_text
    assert answers[0].status == "done" and len(answers[0].content.split()) > 5, "all of it, past the hold"


async def test_reconnecting_mid_run_gets_a_snapshot_then_the_rest_without_loss_or_repeat(room: Room) -> None:
    # The run is fed step by step, so "mid-run" and "while nobody listens" are facts, not a model's pace.
    feed = EventFeed()
    # The new turn reaches the page first (held for a window, it would cover whatever came within it).
    turn, recorder, first, snapshot = await recording(room, feed)
    live = Reassembler(strict=True)
    live.apply(snapshot)
    feed.put(SeatStarted(seat=1, model="demo/atlas"), SeatDelta(seat=1, text="Seen live, ", offset=0))

    def seen(frame: dict[str, Any]) -> bool:
        live.apply(frame)
        return live.texts.get("seat-1") == "Seen live, "

    await first.receive_until(seen)
    await first.close()
    feed.put(SeatDelta(seat=1, text="streamed while nobody listened, ", offset=11))

    async def streamed_on() -> bool:
        return recorder.state.seat(1).buffer.length == 43

    await wait_for(streamed_on)
    second = await room.open()
    assert second.frames[0] == {"type": "hello", "running": [turn.pk]}
    await second.send({"type": "resync", "turn": turn.pk})
    # Like room.js: anything about this turn before its snapshot is older than the snapshot.
    snapshot = await second.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    assert snapshot["status"] == "running"
    # No gap, no duplicate after a snapshot.
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    assert texts.texts["seat-1"] == "Seen live, streamed while nobody listened, "

    answer = "Seen live, streamed while nobody listened, and the rest."
    feed.put(
        SeatDelta(seat=1, text="and the rest.", offset=43),
        SeatDone(seat=1, model="demo/atlas", content=answer, usage=Usage(), timings=Timings()),
        FinalStarted(model="demo/writer"),
        FinalDelta(text="Fused.", offset=0),
        FinalDone(content="Fused.", usage=Usage(), timings=Timings()),
        RunDone(totals=Totals()),
    )

    def strict(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn.pk)(frame)

    ended = await second.receive_until(strict)
    await second.close()
    assert ended["status"] == "done"
    assert texts.texts["seat-1"] == answer and texts.texts["final"] == "Fused."
    saved = await room.turn(turn.pk)
    answers = await answers_of(turn.pk)
    assert saved.final_text == "Fused." and answers[0].content == answer


async def test_the_recorder_flushes_text_while_the_run_is_going(room: Room, endpoint: FakeUpstream) -> None:
    # Held twice: after the first text is saved, and again after more text, so the heartbeat is refreshed by
    # a tick that only carried text while the turn is certainly still running.
    panel, (first, second) = await held_panel(room, endpoint, 5, 10)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": PROMPT, "panel": panel.pk})
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    turn_id = started["turn"]

    async def some_text_saved() -> bool:
        turn = await room.turn(turn_id)
        answers = await answers_of(turn_id)
        return turn.status == "running" and any(a.content for a in answers)

    await wait_for(some_text_saved)
    turn = await room.turn(turn_id)
    assert turn.recorder_channel and turn.heartbeat_at is not None
    taken_at = turn.heartbeat_at
    first.set()

    async def heartbeat_refreshed() -> bool:
        beat = (await room.turn(turn_id)).heartbeat_at
        return beat is not None and beat > taken_at

    # Text-only ticks write the heartbeat with a plain statement: it must read back as a proper date, newer
    # than the last one, and keep the turn from being taken for a dead process's leftover.
    await wait_for(heartbeat_refreshed)
    beat = (await room.turn(turn_id)).heartbeat_at
    assert beat is not None and abs((timezone.now() - beat).total_seconds()) < 30
    assert await sync_to_async(turns_reap_stale)(conversation_id=room.conversation.pk) == 0
    assert (await room.turn(turn_id)).status == "running"
    second.set()
    await socket.receive_until(turn_ended(turn_id))
    await socket.close()
    finished = await room.turn(turn_id)
    answers = await answers_of(turn_id)
    assert finished.final_text and all(a.content for a in answers)


async def test_frames_keep_flowing_to_a_socket_while_its_prompt_is_taken_in(room: Room) -> None:
    socket = await room.open()
    # The database thread is busy (as in a burst of prompts, every socket's start queued there): taking in
    # this prompt waits for it.
    busy, release = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        release.wait(10)

    occupied = asyncio.ensure_future(database_sync_to_async(occupy)())
    await asyncio.to_thread(busy.wait, 5)
    await socket.send({"type": "send", "prompt": "Explain Raft", "panel": room.panel.pk})
    # Meanwhile a frame for the conversation (another page's run, or this one's first words) reaches the page.
    layer = get_channel_layer()
    text = '{"type": "deltas", "deltas": []}'
    await layer.group_send(conversation_group(room.conversation.pk), {"type": "chat.frame", "text": text})
    try:
        assert await socket.receive() == {"type": "deltas", "deltas": []}
    finally:
        release.set()
        await occupied
    # Then the prompt is taken in, as ever.
    started = await socket.receive_until(lambda f: f["type"] == "snapshot")
    ended = await socket.receive_until(turn_ended(started["turn"]))
    assert ended["status"] == "done"


async def test_frames_of_one_socket_are_answered_in_the_order_they_came(room: Room) -> None:
    socket = await room.open()
    # The first needs the database (its panel is looked up), the second is refused on sight: handled each in
    # a task, the second would be answered first.
    await socket.send({"type": "send", "prompt": "Explain Raft", "panel": 999_999})
    await socket.send("not json")
    first, second = await socket.receive(), await socket.receive()
    assert first["type"] == second["type"] == "error"
    assert "That panel does not exist" in first["message"]
    assert "That panel does not exist" not in second["message"]
