"""Fusion as a server tool: the outer model sees a ``fusion`` function, calls it, answers from its result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from openai import AsyncOpenAI

from apps.chat.models import Turn
from tests.api.conftest import Caller
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest

OUTER = "vendor/outer"
PANEL_PLUGIN = {"id": "fusion", "analysis_models": ["vendor/a", "vendor/b"], "model": "vendor/judge"}
# Typed Any: the openai package's types know nothing of server tools.
FUSION: Any = {"type": "fusion"}
OPENROUTER_FUSION: Any = {"type": "openrouter:fusion"}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def tool_results(request: RecordedRequest) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in request.body["messages"] if m["role"] == "tool"]


def outer_script(
    *, fusion_calls: int = 1, then: str = "From the panel: {count} answers.", **options: Any
) -> Any:
    """An outer model that calls fusion ``fusion_calls`` times, then answers from the last tool result."""

    def script(request: RecordedRequest) -> ModelScript:
        results = tool_results(request)
        if len(results) < fusion_calls:
            return ModelScript(
                tool_calls=[{"name": "fusion", "arguments": {"prompt": "Compare A and B"}}], **options
            )
        last = results[-1]
        return ModelScript(
            **options,
            text=then.format(
                count=len(last.get("responses", [])),
                status=last["status"],
                reason=last.get("failure_reason", ""),
            ),
        )

    return script


async def test_the_outer_model_calls_fusion_and_answers_from_its_result(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(OUTER, outer_script())
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    assert completion.choices[0].message.content == "From the panel: 2 answers."
    assert completion.choices[0].finish_reason == "stop"
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["status"] == "ok" and [r["model"] for r in fusion["responses"]] == ["vendor/a", "vendor/b"]

    first, second = upstream.requests_for(OUTER)
    assert [t["function"]["name"] for t in first.body["tools"]] == ["fusion"]
    assert first.body.get("tool_choice") in (None, "auto")
    # The tool result the outer model read is the brief's object, and nothing of ours.
    (result,) = tool_results(second)
    assert set(result) == {"status", "analysis", "responses", "failed_models", "sources"}
    assert result["status"] == "ok" and result["failed_models"] == [] and result["sources"] == []
    assert set(result["analysis"]) >= {"consensus", "contradictions", "blind_spots"}
    # The panel got the outer model's prompt and its web tools, never the fusion tool (one level deep); no
    # writer ran (the outer model writes).
    for seat in ("vendor/a", "vendor/b"):
        (request,) = upstream.requests_for(seat)
        assert request.body["messages"][-1] == {"role": "user", "content": "Compare A and B"}
        # No search service here, so OpenRouter's models get OpenRouter's server-side web tools.
        kinds = [tool["type"] for tool in request.body["tools"]]
        assert kinds == ["openrouter:web_search", "openrouter:web_fetch"]
    assert len(upstream.requests_for("vendor/judge")) == 1
    assert len(upstream.completions()) == 5  # outer, two seats, judge, outer


async def test_the_usage_covers_the_outer_calls_and_the_pipeline(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    figures = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    upstream.default = ModelScript(cost=0.01, usage=figures)
    upstream.script(OUTER, outer_script(cost=0.01, usage=figures))
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[OPENROUTER_FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    usage = completion.usage
    assert usage is not None
    # Two outer calls, two seats and the judge.
    assert len(upstream.completions()) == 5
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (500, 50, 550)
    assert usage.model_extra["cost"] == pytest.approx(0.05)  # type: ignore[index]


async def test_streaming_a_tool_run_sends_progress_then_the_answer(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(OUTER, outer_script())
    stream = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
        stream=True,
    )
    text, progress, finish = [], [], None
    async for chunk in stream:
        if not chunk.choices:
            progress.append(chunk.model_extra["fusion_progress"]["type"])  # type: ignore[index]
            continue
        text.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(text) == "From the panel: 2 answers."
    assert finish == "stop"
    assert progress[0] == "run.started" and "analysis.done" in progress
    assert progress.count("seat.done") == 2


async def test_tool_choice_required_forces_fusion_on_a_model_that_cannot_call_tools(
    oai: AsyncOpenAI, alice: Caller
) -> None:
    completion = await oai.chat.completions.create(
        model="demo/writer",
        messages=[{"role": "user", "content": "PostgreSQL or MySQL?"}],
        tools=[FUSION],
        tool_choice="required",
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["status"] == "ok" and fusion["demo"] is True
    assert [r["model"] for r in fusion["responses"]] == ["demo/atlas", "demo/birch", "demo/cedar"]
    assert completion.choices[0].message.content
    turn = await Turn.objects.aget(pk=fusion["turn_id"])
    assert turn.prompt == "PostgreSQL or MySQL?" and turn.status == "done"


async def test_tool_choice_required_names_the_fusion_function_for_a_tool_model(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(OUTER, outer_script())
    await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION, WEATHER],
        tool_choice="required",
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    first, second = upstream.requests_for(OUTER)
    assert first.body["tool_choice"] == {"type": "function", "function": {"name": "fusion"}}
    # Once fusion ran, the model is free again (forcing it twice would loop).
    assert second.body["tool_choice"] == "auto"


async def test_a_call_to_the_callers_own_function_is_handed_back(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(OUTER, ModelScript(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER, FUSION],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    assert completion.model_extra.get("fusion") is None  # type: ignore[union-attr]
    (request,) = upstream.requests_for(OUTER)
    assert [t["function"]["name"] for t in request.body["tools"]] == ["get_weather", "fusion"]
    assert request.body["tools"][0] == WEATHER


async def test_a_streamed_call_to_the_callers_function_reaches_the_openai_client(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(OUTER, ModelScript(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    stream = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER, FUSION],
        stream=True,
    )
    calls: dict[int, list[str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name, arguments = calls.setdefault(delta.index, ["", ""])
                function = delta.function
                calls[delta.index] = [
                    name + (function.name or "" if function else ""),
                    arguments + (function.arguments or "" if function else ""),
                ]
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [(n, json.loads(a)) for n, a in calls.values()] == [("get_weather", {"city": "Oslo"})]


async def test_a_second_fusion_call_gets_a_capped_result(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(OUTER, outer_script(fusion_calls=2, then="{status}: {reason}"))
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    assert completion.choices[0].message.content == "error: fusion_invocation_capped"
    # The pipeline ran once: one request per seat.
    assert len(upstream.requests_for("vendor/a")) == 1
    assert completion.model_extra["fusion"]["status"] == "ok"  # type: ignore[index]


async def test_when_every_panel_model_fails_the_outer_model_is_told_and_answers(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    for seat in ("vendor/a", "vendor/b"):
        upstream.script(seat, ModelScript(error_status=503, error_message="overloaded"))
    upstream.script(OUTER, outer_script(then="{status}: {reason}"))
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    assert completion.choices[0].message.content == "error: all_panels_failed"
    (result,) = tool_results(upstream.requests_for(OUTER)[1])
    assert result["error"] == "all panel models failed"
    assert [f["model"] for f in result["failed_models"]] == ["vendor/a", "vendor/b"]
    assert result["failed_models"][0]["status_code"] == 503
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    turn = await Turn.objects.aget(pk=fusion["turn_id"])
    assert turn.status == "failed" and turn.failure_reason == "all_panels_failed"


async def test_tool_choice_none_bypasses_fusion(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        tool_choice="none",
    )
    (request,) = upstream.completions()
    assert "tools" not in request.body


@pytest.mark.parametrize("plugin_on", [True, False])
async def test_the_plugin_on_a_plain_model_offers_the_tool_unless_disabled(
    oai: AsyncOpenAI, upstream: FakeUpstream, plugin_on: bool
) -> None:
    upstream.script(OUTER, outer_script())
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [{**PANEL_PLUGIN, "enabled": plugin_on}]},
    )
    if plugin_on:
        assert completion.choices[0].message.content == "From the panel: 2 answers."
    else:
        # Bypassed: a plain call without the fusion tool (the script then asks for fusion, in vain).
        (request,) = upstream.completions()
        assert "tools" not in request.body
        assert completion.model_extra.get("fusion") is None  # type: ignore[union-attr]


async def test_a_saved_turn_keeps_the_outer_models_answer(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(OUTER, outer_script())
    completion = await oai.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": "A or B?"}],
        tools=[FUSION],
        extra_body={"plugins": [PANEL_PLUGIN]},
    )
    turn_id = completion.model_extra["fusion"]["turn_id"]  # type: ignore[index]
    turn = await Turn.objects.select_related("conversation").aget(pk=turn_id)
    assert turn.status == "done" and turn.prompt == "Compare A and B"
    assert turn.final_text == "From the panel: 2 answers."
    assert turn.conversation.source == "api"
    answers = await sync_to_async(lambda: list(turn.answers.values_list("model_id", "status")))()
    assert answers == [("vendor/a", "done"), ("vendor/b", "done")]
