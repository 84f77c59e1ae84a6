"""The judge step inside a run: structured output, one repair, and the degraded path."""

from __future__ import annotations

from apps.fusion.engine import run_fusion
from apps.fusion.prompts import NO_ANALYSIS, REPAIR_REQUEST
from apps.fusion.schemas import AnalysisDone, AnalysisFailed, FinalDone, RunDone
from apps.providers.base import ProviderError
from tests.fusion.conftest import (
    VALID_ANALYSIS,
    FakeClient,
    FakeGateway,
    Script,
    events_collect,
    fusion_request,
    of_type,
)


def writer_prompt(fake: FakeClient) -> str:
    return fake.calls_for("fake/writer")[0].request.messages[-1].content or ""


async def test_a_judge_with_structured_output_is_asked_for_the_json_schema(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.structured.add("fake/judge")

    await events_collect(run_fusion(fusion_request(), gateway=gateway))

    judge = fake.calls_for("fake/judge")[0].request
    assert judge.response_format is not None
    assert judge.response_format["type"] == "json_schema"
    assert judge.temperature == 0 and judge.tools is None and judge.tool_choice is None


async def test_a_judge_without_structured_output_is_instructed_in_the_prompt(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    await events_collect(run_fusion(fusion_request(), gateway=gateway))

    judge = fake.calls_for("fake/judge")[0].request
    assert judge.response_format is None
    task = judge.messages[-1].content or ""
    assert '"consensus"' in task and '"blind_spots"' in task and "JSON object only" in task


async def test_the_analysis_reaches_the_writer(fake: FakeClient, gateway: FakeGateway) -> None:
    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    done = of_type(events, AnalysisDone)[0]
    assert isinstance(done, AnalysisDone)
    assert done.analysis.consensus == ["Both work"] and done.raw == VALID_ANALYSIS
    assert '"Both work"' in writer_prompt(fake) and NO_ANALYSIS not in writer_prompt(fake)


async def test_invalid_judge_json_is_repaired_once_and_then_used(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(chunks=["{not json"]), Script(chunks=[VALID_ANALYSIS]))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    calls = fake.calls_for("fake/judge")
    assert len(calls) == 2
    repair = calls[1].request.messages
    assert repair[-2].role == "assistant" and repair[-2].content == "{not json"
    assert REPAIR_REQUEST in (repair[-1].content or "") and "invalid JSON" in (repair[-1].content or "")
    assert repair[:-2] == calls[0].request.messages
    done = of_type(events, AnalysisDone)[0]
    assert isinstance(done, AnalysisDone) and done.raw == VALID_ANALYSIS
    assert done.usage.prompt_tokens == 20, "usage covers both attempts"
    assert isinstance(events[-1], RunDone)


async def test_invalid_json_twice_takes_the_degraded_path_and_the_writer_still_runs(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(chunks=["Sorry, no JSON today."]))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert len(fake.calls_for("fake/judge")) == 2
    failed = of_type(events, AnalysisFailed)[0]
    assert isinstance(failed, AnalysisFailed)
    assert failed.reason == "judge_not_valid_json"
    assert "after one repair attempt" in failed.detail and failed.raw == "Sorry, no JSON today."
    prompt = writer_prompt(fake)
    assert NO_ANALYSIS in prompt and "judge_not_valid_json" in prompt
    assert isinstance(events[-2], FinalDone) and isinstance(events[-1], RunDone)
    assert events[-1].totals.steps[3].role == "judge" and events[-1].totals.steps[3].status == "failed"


async def test_a_schema_mismatch_after_repair_is_reported_as_such(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(chunks=["{oops"]), Script(chunks=['{"consensus": []}']))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    failed = of_type(events, AnalysisFailed)[0]
    assert isinstance(failed, AnalysisFailed)
    assert failed.reason == "judge_schema_mismatch" and "blind_spots" in failed.detail


async def test_a_judge_upstream_error_degrades_without_a_repair(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(chunks=[], error=ProviderError("No credits", status_code=402)))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert len(fake.calls_for("fake/judge")) == 1
    failed = of_type(events, AnalysisFailed)[0]
    assert isinstance(failed, AnalysisFailed)
    assert failed.reason == "judge_upstream_error"
    assert "402" in failed.detail and "No credits" in failed.detail
    assert "judge_upstream_error" in writer_prompt(fake)
    assert isinstance(events[-1], RunDone)


async def test_an_empty_judge_completion_is_reported_after_its_repair(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(chunks=[]))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    assert len(fake.calls_for("fake/judge")) == 2
    failed = of_type(events, AnalysisFailed)[0]
    assert isinstance(failed, AnalysisFailed) and failed.reason == "judge_empty_completion"
    assert isinstance(events[-1], RunDone)
