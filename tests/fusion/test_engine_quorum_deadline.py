"""Quorum and deadline: the judge starts early, and unfinished seats are reported missing."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.fusion import schemas
from apps.fusion.engine import run_fusion
from apps.fusion.schemas import (
    DEFAULT_DEADLINE_S,
    FusionOptions,
    FusionRequest,
    RunDone,
    RunFailed,
    SeatDelta,
    SeatDone,
    SeatFailed,
)
from apps.providers.base import ProviderError
from tests.fusion.conftest import FakeClient, FakeGateway, Script, events_collect, fusion_request, of_type


async def test_quorum_starts_the_judge_once_enough_seats_are_done(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    never = asyncio.Event()
    fake.text("fake/a", "Answer A")
    fake.text("fake/b", "Answer B")
    fake.script("fake/c", Script(chunks=["slow ", "part ", "never"], gate=never, gate_after=2))

    events = await asyncio.wait_for(events_collect(run_fusion(fusion_request(quorum=2), gateway=gateway)), 5)

    missing = of_type(events, SeatFailed)
    assert len(missing) == 1 and isinstance(missing[0], SeatFailed)
    assert (missing[0].seat, missing[0].reason) == (3, "missing")
    assert "once 2 seats were done" in missing[0].error
    assert missing[0].partial_text == "slow part "
    assert fake.calls_for("fake/c")[0].cancelled
    kinds = [e.type for e in events]
    assert kinds.index("seat.failed") < kinds.index("analysis.started")
    judge_prompt = fake.calls_for("fake/judge")[0].request.messages[-1].content or ""
    assert "Answer A" in judge_prompt and "Answer B" in judge_prompt and "slow part" not in judge_prompt
    assert isinstance(events[-1], RunDone)
    assert events[-1].totals.steps[2].status == "missing"


async def test_quorum_counts_only_seats_that_succeeded(fake: FakeClient, gateway: FakeGateway) -> None:
    fake.script("fake/a", Script(chunks=[], error=ProviderError("boom", status_code=500)))
    fake.text("fake/b", "Answer B")
    fake.script("fake/c", Script(chunks=["Answer C"], delay=0.01))

    events = await events_collect(run_fusion(fusion_request(quorum=2), gateway=gateway))

    assert sorted(e.seat for e in of_type(events, SeatDone)) == [2, 3]
    assert [e.reason for e in of_type(events, SeatFailed)] == ["error"]


async def test_deadline_starts_the_judge_keeping_the_partial_text_of_slow_seats(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    never = asyncio.Event()
    fake.text("fake/a", "Answer A")
    fake.script("fake/b", Script(chunks=["partial ", "text ", "and more"], gate=never, gate_after=2))
    fake.script("fake/c", Script(chunks=["nothing yet"], gate=never))

    started = time.perf_counter()
    events = await asyncio.wait_for(
        events_collect(run_fusion(fusion_request(deadline_s=0.2), gateway=gateway)), 5
    )
    elapsed = time.perf_counter() - started

    assert 0.2 <= elapsed < 2
    missing = {e.seat: e for e in of_type(events, SeatFailed) if isinstance(e, SeatFailed)}
    assert set(missing) == {2, 3}
    assert all(e.reason == "missing" and "deadline" in e.error for e in missing.values())
    assert missing[2].partial_text == "partial text "
    assert missing[2].partial_text == "".join(
        e.text for e in events if isinstance(e, SeatDelta) and e.seat == 2
    )
    assert missing[3].partial_text == ""
    assert fake.calls_for("fake/b")[0].cancelled and fake.calls_for("fake/c")[0].cancelled
    # The cancelled calls may have been billed; their cost is unknown rather than invented.
    assert events[-1].totals.usage.cost is None  # type: ignore[union-attr]
    assert isinstance(events[-1], RunDone)


async def test_deadline_with_no_seat_done_fails_the_run(fake: FakeClient, gateway: FakeGateway) -> None:
    never = asyncio.Event()
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(gate=never))

    events = await asyncio.wait_for(
        events_collect(run_fusion(fusion_request(deadline_s=0.05), gateway=gateway)), 5
    )

    assert [e.reason for e in of_type(events, SeatFailed)] == ["missing"] * 3
    assert isinstance(events[-1], RunFailed) and events[-1].reason == "all_panels_failed"
    assert not fake.calls_for("fake/judge")


def test_a_request_that_sets_no_deadline_gets_the_default_of_90_seconds() -> None:
    assert FusionOptions().deadline_s == DEFAULT_DEADLINE_S == 90
    assert fusion_request().options.deadline_s == 90
    assert (
        FusionRequest.model_validate(
            {"prompt": "Hi", "seats": [{"seat": 1, "model": "fake/a"}], "judge": "fake/j", "writer": "fake/w"}
        ).options.deadline_s
        == 90
    )
    assert fusion_request(deadline_s=None).options.deadline_s is None, "an explicit None still waits for all"


async def test_a_stalled_seat_with_no_deadline_set_is_cut_at_the_default(
    fake: FakeClient, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped default is 90 s (above); a shorter one keeps the test short. The request names no deadline.
    monkeypatch.setattr(schemas, "DEFAULT_DEADLINE_S", 0.3)
    never = asyncio.Event()
    fake.text("fake/a", "Answer A")
    fake.text("fake/b", "Answer B")
    fake.script("fake/c", Script(chunks=["silent ", "from here"], gate=never, gate_after=1))
    request = fusion_request()

    started = time.perf_counter()
    events = await asyncio.wait_for(events_collect(run_fusion(request, gateway=gateway)), 5)
    elapsed = time.perf_counter() - started

    assert 0.3 <= elapsed < 2
    missing = of_type(events, SeatFailed)
    assert len(missing) == 1 and isinstance(missing[0], SeatFailed)
    assert (missing[0].seat, missing[0].reason, missing[0].partial_text) == (3, "missing", "silent ")
    assert missing[0].error == "did not finish within the 0.3 s deadline"
    assert fake.calls_for("fake/c")[0].cancelled
    assert isinstance(events[-1], RunDone)
    assert [e.seat for e in of_type(events, SeatDone)] == [1, 2]
