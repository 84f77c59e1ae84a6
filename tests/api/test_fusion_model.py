"""Fusion as a model slug: ``fusion`` (the default panel), ``fusion/<slug>``, and the plugin's overrides."""

from __future__ import annotations

import json

import httpx
import pytest
from asgiref.sync import sync_to_async
from openai import AsyncOpenAI, NotFoundError

from apps.panels.models import Panel, PanelMember
from apps.providers.demo import panel_answer
from tests.api.conftest import Caller, auth
from tests.fakes.upstream import FakeUpstream

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"


def sse_events(body: str) -> list[dict[str, object] | str]:
    """The ``data:`` payloads of an SSE body, JSON-decoded, with ``[DONE]`` kept as a string."""
    events: list[dict[str, object] | str] = []
    for line in body.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_fusion_runs_the_demo_panel_without_a_key(oai: AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "fusion"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert "fused answer" in (choice.message.content or "")
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["status"] == "ok" and fusion["demo"] is True and fusion["panel"] == "fusion/demo"
    assert [r["model"] for r in fusion["responses"]] == ["demo/atlas", "demo/birch", "demo/cedar"]
    assert set(fusion["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    assert fusion["failed_models"] == [] and fusion["sources"] == []
    # Usage is summed over three seats, the judge and the writer.
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.model_extra["cost"] == 0.0  # type: ignore[index]


async def test_streaming_reports_progress_that_the_openai_client_skips(oai: AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fusion/demo", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text, progress, last = [], [], None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            last = chunk
        else:
            progress.append(chunk.model_extra["fusion_progress"]["type"])  # type: ignore[index]
    assert "fused answer" in "".join(text)
    assert progress[0] == "run.started"
    assert progress.count("seat.started") == 3 and progress.count("seat.done") == 3
    assert progress.index("analysis.done") > max(i for i, p in enumerate(progress) if p == "seat.done")
    assert last is not None and last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.total_tokens > 0
    assert last.model_extra["fusion"]["status"] == "ok"  # type: ignore[index]


async def test_the_stream_helper_of_the_openai_client_accumulates_the_answer(oai: AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(
        model="fusion", messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert "fused answer" in (final.choices[0].message.content or "")
    assert final.choices[0].finish_reason == "stop"


async def test_raw_stream_is_sse_ending_with_done(api: httpx.AsyncClient, alice: Caller) -> None:
    response = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "fusion", "stream": True, "messages": [{"role": "user", "content": QUESTION}]},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert all(isinstance(e, dict) and e["object"] == "chat.completion.chunk" for e in events[:-1])
    first = events[0]
    assert isinstance(first, dict) and first["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]


async def test_a_named_preset_runs_on_the_loopback_upstream(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    completion = await oai.chat.completions.create(
        model="fusion/quality", messages=[{"role": "user", "content": QUESTION}]
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["demo"] is False and fusion["panel"] == "fusion/quality"
    asked = {request.body["model"] for request in upstream.completions()}
    assert asked == {"~anthropic/claude-opus-latest", "~openai/gpt-latest", "~google/gemini-pro-latest"}
    # Three seats, a judge and a writer: five upstream calls.
    assert len(upstream.completions()) == 5
    assert completion.choices[0].message.content


async def test_usage_sums_every_call_with_its_cost(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    from tests.fakes.upstream import ModelScript

    for model in ("vendor/a", "vendor/b", "vendor/judge", "vendor/writer"):
        upstream.script(model, ModelScript(cost=0.001, usage={"prompt_tokens": 10, "completion_tokens": 5}))
    completion = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={
            "plugins": [
                {"id": "fusion", "analysis_models": ["vendor/a", "vendor/b"], "model": "vendor/judge"}
            ]
        },
    )
    usage = completion.usage
    assert usage is not None
    # Two seats and the judge; the writer is the Quality preset's (default with a key), unscripted.
    assert usage.prompt_tokens >= 30 and usage.completion_tokens >= 15
    assert {r.body["model"] for r in upstream.completions()} == {
        "vendor/a",
        "vendor/b",
        "vendor/judge",
        "~anthropic/claude-opus-latest",
    }


async def test_plugin_models_win_over_its_preset(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    completion = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={
            "plugins": [
                {
                    "id": "fusion",
                    "preset": "general-budget",
                    "analysis_models": ["demo/atlas", "demo/birch"],
                    "model": "demo/judge",
                    "temperature": 0.3,
                    "max_completion_tokens": 900,
                }
            ]
        },
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert [r["model"] for r in fusion["responses"]] == ["demo/atlas", "demo/birch"]
    assert fusion["panel"] == "fusion/budget+plugin"
    # The budget preset's writer wrote the answer: the only upstream call.
    writers = [r.body for r in upstream.completions()]
    assert len(writers) == 1 and writers[0]["max_tokens"] == 900


async def test_an_openrouter_preset_name_selects_our_preset(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    completion = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"plugins": [{"id": "fusion", "preset": "general-fast"}]},
    )
    assert completion.model_extra["fusion"]["panel"] == "fusion/fast"  # type: ignore[index]


async def test_a_saved_panel_of_the_caller_runs_by_its_slug(oai: AsyncOpenAI, alice: Caller) -> None:
    await sync_to_async(_panel)(alice, "my-pair", ["demo/cedar", "demo/atlas"])
    completion = await oai.chat.completions.create(
        model="fusion/my-pair", messages=[{"role": "user", "content": QUESTION}]
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert [r["model"] for r in fusion["responses"]] == ["demo/cedar", "demo/atlas"]


async def test_someone_elses_panel_slug_is_not_found(oai: AsyncOpenAI, bob: Caller) -> None:
    await sync_to_async(_panel)(bob, "bobs-panel", ["demo/atlas"])
    with pytest.raises(NotFoundError) as caught:
        await oai.chat.completions.create(
            model="fusion/bobs-panel", messages=[{"role": "user", "content": "Hi"}]
        )
    error = caught.value.body
    assert isinstance(error, dict) and "bobs-panel" in error["message"] and error["code"] == "model_not_found"


async def test_plugin_disabled_makes_a_plain_call(oai: AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"plugins": [{"id": "fusion", "enabled": False, "model": "demo/atlas"}]},
    )
    assert completion.model_extra.get("fusion") is None  # type: ignore[union-attr]
    assert completion.choices[0].message.content == panel_answer(model="demo/atlas", prompt=QUESTION).strip()


async def test_history_and_system_messages_reach_the_panel(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    await oai.chat.completions.create(
        model="fusion",
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is SQLite?"},
            {"role": "assistant", "content": "An embedded database."},
            {"role": "user", "content": "And its limits?"},
        ],
        extra_body={"plugins": [{"id": "fusion", "analysis_models": ["vendor/a"], "model": "vendor/judge"}]},
    )
    seat = upstream.requests_for("vendor/a")[0].body["messages"]
    assert seat == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What is SQLite?"},
        {"role": "assistant", "content": "An embedded database."},
        {"role": "user", "content": "And its limits?"},
    ]


def _panel(caller: Caller, slug: str, models: list[str]) -> Panel:
    panel = Panel.objects.create(
        owner=caller.user,
        name=slug.replace("-", " ").title(),
        slug=slug,
        judge_model="demo/judge",
        writer_model="demo/writer",
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=i, model_id=m) for i, m in enumerate(models, start=1)
    )
    return panel
