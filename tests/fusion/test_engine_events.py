"""The event stream: its order, contiguous offsets, concurrency of seats, and the totals."""

from __future__ import annotations

import asyncio

import pytest

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import (
    AnalysisDone,
    FinalDelta,
    FinalDone,
    RunDone,
    SeatDelta,
    SeatDone,
    SeatReasoningDelta,
)
from apps.providers.base import Usage
from tests.fusion.conftest import (
    PRICE_PER_TOKEN,
    FakeClient,
    FakeGateway,
    Script,
    events_collect,
    fusion_request,
    of_type,
)


async def test_it_yields_events_in_the_documented_order(fake: FakeClient, gateway: FakeGateway) -> None:
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.text(model, f"Answer of {model} in a few words.")

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    kinds = [event.type for event in events]
    assert kinds[0] == "run.started"
    panel = kinds[1 : kinds.index("analysis.started")]
    assert set(panel) == {"seat.started", "seat.delta", "seat.done"}
    for seat in (1, 2, 3):
        own = [e.type for e in events if getattr(e, "seat", None) == seat]
        assert own[0] == "seat.started" and own[-1] == "seat.done"
        assert set(own[1:-1]) == {"seat.delta"}
    tail = kinds[kinds.index("analysis.started") :]
    assert tail[:4] == ["analysis.started", "analysis.done", "final.started", "final.delta"]
    assert tail[-2:] == ["final.done", "run.done"]
    assert set(tail[3:-2]) == {"final.delta"}


async def test_seat_and_final_offsets_are_contiguous_and_match_the_content(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.text("fake/a", "one two three four")
    fake.text("fake/b", "alpha beta")
    fake.text("fake/c", "x")
    fake.text("fake/writer", "The fused answer, streamed in several words.")

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    for done in of_type(events, SeatDone):
        assert isinstance(done, SeatDone)
        deltas = [e for e in events if isinstance(e, SeatDelta) and e.seat == done.seat]
        offset = 0
        for delta in deltas:
            assert delta.offset == offset
            offset += len(delta.text)
        assert "".join(d.text for d in deltas) == done.content
    finals = of_type(events, FinalDelta)
    assert [d.offset for d in finals] == [sum(len(f.text) for f in finals[:i]) for i in range(len(finals))]
    final_done = events[-2]
    assert isinstance(final_done, FinalDone)
    assert final_done.content == "The fused answer, streamed in several words."


async def test_seats_run_concurrently_and_interleave(fake: FakeClient, gateway: FakeGateway) -> None:
    # Every seat waits until all three have started: run one after another, they would never finish.
    everyone_started = asyncio.Event()
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(chunks=["a ", "b ", "c"], gate=everyone_started))

    async def release_when_all_started() -> None:
        while fake.active < 3:
            await asyncio.sleep(0)
        everyone_started.set()

    releaser = asyncio.create_task(release_when_all_started())
    events = await asyncio.wait_for(events_collect(run_fusion(fusion_request(), gateway=gateway)), 5)
    await releaser

    assert fake.max_active == 3
    seat_calls = [fake.calls_for(m)[0] for m in ("fake/a", "fake/b", "fake/c")]
    assert max(c.started for c in seat_calls) < min(c.ended for c in seat_calls if c.ended)
    delta_seats = [e.seat for e in events if isinstance(e, SeatDelta)]
    assert delta_seats != sorted(delta_seats), "deltas of different seats interleave"


async def test_the_same_model_may_hold_several_seats(fake: FakeClient, gateway: FakeGateway) -> None:
    fake.text("fake/a", "same model, own seat")

    events = await events_collect(run_fusion(fusion_request(seats=["fake/a", "fake/a"]), gateway=gateway))

    assert [e.seat for e in of_type(events, SeatDone)] in ([1, 2], [2, 1])
    assert len(fake.calls_for("fake/a")) == 2
    judge_prompt = fake.calls_for("fake/judge")[0].request.messages[-1].content or ""
    assert '"fake/a #1"' in judge_prompt and '"fake/a #2"' in judge_prompt


async def test_reasoning_is_streamed_apart_from_the_answer(fake: FakeClient, gateway: FakeGateway) -> None:
    fake.script("fake/a", Script(reasoning=["thinking..."], chunks=["answer"]))

    events = await events_collect(run_fusion(fusion_request(seats=["fake/a"]), gateway=gateway))

    reasoning = [e for e in events if isinstance(e, SeatReasoningDelta)]
    assert [(r.seat, r.text) for r in reasoning] == [(1, "thinking...")]
    done = of_type(events, SeatDone)[0]
    assert isinstance(done, SeatDone) and done.content == "answer"
    assert done.timings.ttft_ms is not None


async def test_reasoning_deltas_carry_contiguous_offsets_of_their_own(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/a", Script(reasoning=["First ", "weigh ", "costs."], chunks=["Use ", "Redis."]))

    events = await events_collect(run_fusion(fusion_request(seats=["fake/a"]), gateway=gateway))

    reasoning = [e for e in events if isinstance(e, SeatReasoningDelta)]
    assert [(r.offset, r.text) for r in reasoning] == [(0, "First "), (6, "weigh "), (12, "costs.")]
    # The answer's offsets count the answer alone.
    answer = [e for e in events if isinstance(e, SeatDelta)]
    assert [(a.offset, a.text) for a in answer] == [(0, "Use "), (4, "Redis.")]


async def test_seat_temperature_wins_over_the_panel_temperature_and_limits_are_passed(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    request = fusion_request(seats=["fake/a", "fake/b"], temperature=0.7, max_completion_tokens=321)
    request.seats[0].temperature = 0.2

    await events_collect(run_fusion(request, gateway=gateway))

    first, second = fake.calls_for("fake/a")[0].request, fake.calls_for("fake/b")[0].request
    assert (first.temperature, second.temperature) == (0.2, 0.7)
    assert first.max_tokens == second.max_tokens == 321
    judge = fake.calls_for("fake/judge")[0].request
    assert judge.temperature == 0 and judge.tools is None


async def test_totals_sum_every_step_with_priced_usage(fake: FakeClient, gateway: FakeGateway) -> None:
    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    run_done = events[-1]
    assert isinstance(run_done, RunDone)
    totals = run_done.totals
    assert [(s.role, s.seat, s.status) for s in totals.steps] == [
        ("seat", 1, "done"),
        ("seat", 2, "done"),
        ("seat", 3, "done"),
        ("judge", None, "done"),
        ("writer", None, "done"),
    ]
    # Five calls of 10 prompt + 5 completion tokens, priced by the gateway.
    assert (totals.usage.prompt_tokens, totals.usage.completion_tokens) == (50, 25)
    assert totals.usage.cost == pytest.approx(75 * PRICE_PER_TOKEN)
    assert totals.known_cost == pytest.approx(75 * PRICE_PER_TOKEN)
    assert all(s.timings.duration_ms is not None and s.timings.duration_ms >= 0 for s in totals.steps)
    assert totals.duration_ms >= max(s.timings.duration_ms or 0 for s in totals.steps)
    analysis = of_type(events, AnalysisDone)[0]
    assert isinstance(analysis, AnalysisDone) and analysis.usage.cost == pytest.approx(15 * PRICE_PER_TOKEN)


async def test_an_unknown_step_cost_makes_the_total_unknown_but_keeps_the_known_part(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    class PartlyPriced(FakeGateway):
        def cost_of(self, model: str, usage: Usage) -> float | None:
            return None if model == "fake/b" else 0.01

    events = await events_collect(run_fusion(fusion_request(), gateway=PartlyPriced(fake)))

    totals = events[-1].totals  # type: ignore[union-attr]
    assert totals.usage.cost is None
    assert totals.known_cost == pytest.approx(0.04)
