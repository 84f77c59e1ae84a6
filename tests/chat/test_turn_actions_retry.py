"""Retrying a turn's failed seats: the answered seats are kept (not called again), the failed ones run again,
then the judge and the writer over the full set; the turn's cost is what it cost before plus the retry."""

from __future__ import annotations

import re
import threading

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer, Turn
from apps.chat.services import ChatError, turn_retry_failed
from apps.fusion.engine import run_fusion
from apps.fusion.schemas import FusionRequest, KeptAnswer, RunDone, SeatDone, SeatFailed, SeatStarted
from apps.panels.models import Panel
from tests.chat.conftest import Room, panel_make, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.fusion.conftest import FakeClient, FakeGateway, Script, events_collect, fusion_request, of_type

VALID_ANALYSIS = (
    '{"consensus": ["Both work"], "contradictions": [], "partial_coverage": [], '
    '"unique_insights": [], "blind_spots": []}'
)


def _fake() -> FakeClient:
    client = FakeClient()
    client.script("fake/judge", Script(chunks=[VALID_ANALYSIS]))
    client.text("fake/writer", "The fused answer.")
    client.text("fake/b", "A fresh answer from b.")
    return client


async def test_the_engine_skips_kept_seats_and_the_judge_and_writer_read_every_answer() -> None:
    client = _fake()
    request = fusion_request(seats=["fake/a", "fake/b"]).model_copy(
        update={"kept": [KeptAnswer(seat=1, model="fake/a", content="The kept answer of a.")]}
    )
    events = await events_collect(run_fusion(request, gateway=FakeGateway(client)))

    assert client.calls_for("fake/a") == [], "a kept seat is not called again"
    assert [event.seat for event in of_type(events, SeatStarted)] == [2]
    assert [event.seat for event in of_type(events, SeatDone)] == [2]
    for role in ("fake/judge", "fake/writer"):
        sent = " ".join(str(message.content) for message in client.calls_for(role)[0].request.messages)
        assert "The kept answer of a." in sent and "A fresh answer from b." in sent
        assert sent.index("The kept answer of a.") < sent.index("A fresh answer from b."), "seat order"
    totals = of_type(events, RunDone)[0].totals
    assert [(step.role, step.seat) for step in totals.steps] == [
        ("seat", 2),
        ("judge", None),
        ("writer", None),
    ]


async def test_a_retry_waits_for_its_seat_even_when_the_kept_answers_meet_the_quorum() -> None:
    client = _fake()
    client.text("fake/b", "Slow but wanted.", delay=0.02)
    request = fusion_request(seats=["fake/a", "fake/b"], quorum=1).model_copy(
        update={"kept": [KeptAnswer(seat=1, model="fake/a", content="Kept.")]}
    )
    events = await events_collect(run_fusion(request, gateway=FakeGateway(client)))
    assert of_type(events, SeatFailed) == []
    assert of_type(events, SeatDone)[0].content == "Slow but wanted."


def test_a_kept_answer_must_name_a_seat_of_the_panel_with_its_model() -> None:
    request = fusion_request(seats=["fake/a"]).model_dump()
    with pytest.raises(ValueError, match="does not match a seat"):
        FusionRequest.model_validate({**request, "kept": [{"seat": 1, "model": "fake/z", "content": ""}]})
    with pytest.raises(ValueError, match="does not match a seat"):
        FusionRequest.model_validate({**request, "kept": [{"seat": 2, "model": "fake/a", "content": ""}]})


# --- in the chatroom, over the socket, against the loopback upstream -------------------------------------

transactional = pytest.mark.django_db(transaction=True)


def _flaky_panel(room: Room) -> Panel:
    panel = panel_make(room.user, ["demo/atlas", "fake/flaky"])
    panel.judge_model, panel.writer_model = "fake/judge", "fake/writer"
    panel.save()
    return panel


@transactional
async def test_retrying_failed_seats_keeps_the_answered_ones_and_runs_the_judge_and_writer_again(
    room: Room, endpoint: FakeUpstream
) -> None:
    # Down on the first request (no retries at the HTTP seam here), answering on the next, whose first words
    # wait for the test: the retry is certainly still running when its first frame is looked at.
    answering = threading.Event()
    endpoint.script(
        "flaky",
        ModelScript(
            error_status=503,
            fail_times=1,
            text="Back up and answering.",
            cost=0.001,
            holds={0: answering},
        ),
    )
    endpoint.script("judge", ModelScript(cost=0.002))
    endpoint.script("writer", ModelScript(text="The fused answer, written again.", cost=0.003))
    panel = await sync_to_async(_flaky_panel)(room)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Is it up?", "panel": panel.pk})
    first = await socket.receive_until(turn_ended())
    turn_id = first["turn"]
    before = await sync_to_async(lambda: {a.seat: a for a in PanelAnswer.objects.filter(turn_id=turn_id)})()
    assert before[2].status == "failed" and before[2].status_code == 503
    assert before[1].status == "done" and before[1].content
    assert 'data-turn-action="retry"' in first["html"] and "Retry failed seat (1)" in first["html"]
    assert 'data-seat="2" data-model="fake/flaky" data-status="failed"' in first["html"]
    cost_before = (await room.turn(turn_id)).cost
    # The judge and the writer; the 503 was not billed.
    assert cost_before is not None and cost_before == pytest.approx(0.005)
    judge_calls, writer_calls = len(endpoint.requests_for("judge")), len(endpoint.requests_for("writer"))

    await socket.send({"type": "retry", "turn": turn_id})
    restarted = await socket.receive_until(lambda f: f["type"] == "snapshot" and f["status"] == "running")
    assert restarted["turn"] == turn_id, "a retry runs in place"
    # The kept seat shows done with its answer; the retried one runs again (waiting for its new run, or
    # already started on it if that came within the snapshot's window), its failure gone.
    assert 'data-seat="1" data-model="demo/atlas" data-status="done"' in restarted["html"]
    assert re.search(
        r'data-seat="2" data-model="fake/flaky" data-status="(waiting|streaming)"', restarted["html"]
    )
    assert 'data-status="failed"' not in restarted["html"]
    answering.set()
    ended = await socket.receive_until(turn_ended(turn_id))
    await socket.close()

    assert ended["status"] == "done"
    after = await sync_to_async(lambda: {a.seat: a for a in PanelAnswer.objects.filter(turn_id=turn_id)})()
    assert after[1].content == before[1].content and after[1].duration_ms == before[1].duration_ms
    assert after[2].status == "done" and after[2].content == "Back up and answering."
    assert len(endpoint.requests_for("flaky")) == 2
    assert len(endpoint.requests_for("judge")) > judge_calls
    assert len(endpoint.requests_for("writer")) == writer_calls + 1
    turn = await room.turn(turn_id)
    assert turn.final_text == "The fused answer, written again."
    assert after[2].cost == pytest.approx(0.001) and after[1].cost == 0.0
    # What was spent before stays spent: the retry's cost is added to it.
    assert turn.cost == pytest.approx(cost_before + 0.001 + 0.002 + 0.003)
    assert turn.totals["known_cost"] == pytest.approx(turn.cost)
    assert await sync_to_async(Turn.objects.filter(conversation=room.conversation).count)() == 1


@transactional
async def test_a_retry_is_refused_when_every_seat_answered_and_while_a_run_goes_on(room: Room) -> None:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "All good?", "panel": room.panel.pk})
    ended = await socket.receive_until(turn_ended())
    assert 'data-turn-action="retry"' not in ended["html"]
    with pytest.raises(ChatError, match="nothing to retry"):
        await turn_retry_failed(user=room.user, conversation_id=room.conversation.pk, turn_id=ended["turn"])

    await sync_to_async(PanelAnswer.objects.filter(turn_id=ended["turn"], seat=2).update)(status="failed")
    await sync_to_async(Turn.objects.filter(pk=ended["turn"]).update)(status="running")
    with pytest.raises(ChatError, match="run is in progress"):
        await turn_retry_failed(user=room.user, conversation_id=room.conversation.pk, turn_id=ended["turn"])
    await socket.close()


@transactional
async def test_a_cancelled_retry_adds_only_what_the_retried_seat_streamed(
    room: Room, endpoint: FakeUpstream
) -> None:
    words = " ".join(f"word{index}" for index in range(400))
    endpoint.script(
        "flaky",
        [ModelScript(error_status=503), ModelScript(text=words, tokens_per_s=200, send_usage=False)],
    )
    panel = await sync_to_async(_flaky_panel)(room)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Is it up?", "panel": panel.pk})
    first = await socket.receive_until(turn_ended())
    turn_id = first["turn"]
    before = (await room.turn(turn_id)).totals

    await socket.send({"type": "retry", "turn": turn_id})
    await socket.receive_until(
        lambda f: any(d.get("seat") == 2 and d["offset"] > 100 for d in f.get("deltas", []))
    )
    await socket.send({"type": "cancel", "turn": turn_id})
    ended = await socket.receive_until(turn_ended(turn_id))
    await socket.close()

    assert ended["status"] == "cancelled"
    turn = await room.turn(turn_id)
    seats = [(step["role"], step["seat"]) for step in turn.totals["steps"]]
    assert seats.count(("seat", 1)) == 1, "the kept seat is counted once, by the run that produced it"
    assert seats.count(("seat", 2)) == 2, "the failed attempt and the cut-off retry"
    retried = await sync_to_async(PanelAnswer.objects.get)(turn_id=turn_id, seat=2)
    assert retried.usage_estimated and retried.completion_tokens > 0
    added = turn.totals["usage"]["total_tokens"] - before["usage"]["total_tokens"]
    assert added == retried.prompt_tokens + retried.completion_tokens
    assert turn.totals["estimated"] is True
