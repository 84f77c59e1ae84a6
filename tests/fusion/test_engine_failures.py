"""Failures: one seat, every seat, unknown models, the writer, and a client's own defect."""

from __future__ import annotations

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import AnalysisStarted, RunDone, RunFailed, SeatDone, SeatFailed
from apps.providers.base import ProviderError
from tests.fusion.conftest import FakeClient, FakeGateway, Script, events_collect, fusion_request, of_type


async def test_one_failing_seat_is_reported_and_the_others_carry_on(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script(
        "fake/b",
        Script(chunks=["half ", "an "], error=ProviderError("Provider disconnected", status_code=502)),
    )
    fake.text("fake/a", "Answer A")
    fake.text("fake/c", "Answer C")

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    failed = of_type(events, SeatFailed)
    assert len(failed) == 1
    assert isinstance(failed[0], SeatFailed)
    assert (failed[0].seat, failed[0].reason, failed[0].status_code) == (2, "error", 502)
    assert failed[0].error == "Provider disconnected"
    assert failed[0].partial_text == "half an "
    assert sorted(e.seat for e in of_type(events, SeatDone)) == [1, 3]
    judge_prompt = fake.calls_for("fake/judge")[0].request.messages[-1].content or ""
    assert "Answer A" in judge_prompt and "Answer C" in judge_prompt and "half an" not in judge_prompt
    assert "left out: fake/b" in judge_prompt
    assert isinstance(events[-1], RunDone)
    # Text was produced but no usage came back: its cost cannot be known.
    step = events[-1].totals.steps[1]
    assert (step.status, step.usage.cost) == ("failed", None)


async def test_a_seat_with_an_unknown_model_fails_with_404(fake: FakeClient) -> None:
    gateway = FakeGateway(fake, unknown={"nobody/model"})

    events = await events_collect(
        run_fusion(fusion_request(seats=["fake/a", "nobody/model"]), gateway=gateway)
    )

    failed = of_type(events, SeatFailed)[0]
    assert isinstance(failed, SeatFailed)
    assert (failed.seat, failed.status_code, failed.error) == (2, 404, "No provider serves nobody/model")
    assert failed.usage.cost == 0.0, "a request that never ran costs nothing"
    assert isinstance(events[-1], RunDone)


async def test_all_seats_failing_ends_the_run_without_judge_or_writer(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(chunks=[], error=ProviderError("Rate limited", status_code=429)))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert len(of_type(events, SeatFailed)) == 3
    last = events[-1]
    assert isinstance(last, RunFailed)
    assert last.reason == "all_panels_failed"
    assert "Rate limited" in last.message
    assert [s.status for s in last.totals.steps] == ["failed"] * 3
    assert not of_type(events, AnalysisStarted)
    assert not fake.calls_for("fake/judge") and not fake.calls_for("fake/writer")


async def test_an_unknown_judge_or_writer_fails_the_run_before_anything_runs(fake: FakeClient) -> None:
    for role in ("judge", "writer"):
        gateway = FakeGateway(fake, unknown={"nobody/model"})

        events = await events_collect(
            run_fusion(fusion_request(**{role: "nobody/model"}), gateway=gateway)  # type: ignore[arg-type]
        )

        assert len(events) == 1
        assert isinstance(events[0], RunFailed)
        assert events[0].reason == "invalid_model"
        assert role in events[0].message and "nobody/model" in events[0].message
    assert fake.calls == []


async def test_a_failing_writer_fails_the_run_keeping_the_partial_final_text(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script(
        "fake/writer",
        Script(chunks=["The fused ", "answer"], error=ProviderError("Upstream timed out", status_code=408)),
    )

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert [e.type for e in events[-4:]] == ["final.started", "final.delta", "final.delta", "run.failed"]
    last = events[-1]
    assert isinstance(last, RunFailed)
    assert last.reason == "writer_failed"
    assert last.partial_final == "The fused answer"
    assert "408" in last.message and "Upstream timed out" in last.message
    assert last.totals.steps[-1].role == "writer" and last.totals.steps[-1].status == "failed"


async def test_an_empty_writer_answer_fails_the_run(fake: FakeClient, gateway: FakeGateway) -> None:
    fake.script("fake/writer", Script(chunks=[]))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert isinstance(events[-1], RunFailed)
    assert events[-1].reason == "writer_failed" and "empty" in events[-1].message


async def test_a_client_defect_fails_only_its_seat(fake: FakeClient, gateway: FakeGateway) -> None:
    fake.script("fake/a", Script(chunks=["x"], error=KeyError("choices")))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    failed = of_type(events, SeatFailed)[0]
    assert isinstance(failed, SeatFailed)
    assert failed.seat == 1 and "KeyError" in failed.error and failed.status_code is None
    assert all(isinstance(e, SeatDone) for e in of_type(events, SeatDone))
    assert isinstance(events[-1], RunDone)
