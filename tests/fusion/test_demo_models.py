"""The offline demo models: deterministic, different in substance, and a judge that really compares."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.fusion.analysis import analysis_parse, analysis_response_format
from apps.fusion.demo_content import CONSIDERATIONS, analysis_compute, role_reply
from apps.fusion.engine import run_fusion
from apps.fusion.prompts import (
    PanelAnswerText,
    judge_messages,
    judge_repair_messages,
    writer_messages,
)
from apps.fusion.schemas import AnalysisDone, FinalDone, RunDone, SeatDone
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    Finish,
    StreamChunk,
    TextDelta,
    UnknownModelError,
    UsageReport,
)
from apps.providers.catalog import DEMO_MODELS
from apps.providers.demo import DemoClient, panel_answer
from apps.providers.registry import gateway_from_settings
from tests.fusion.conftest import FakeGateway, events_collect, fusion_request, of_type

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
PANEL = ["demo/atlas", "demo/birch", "demo/cedar"]


async def reply(model: str, messages: list[ChatMessage], **fields: Any) -> tuple[str, list[StreamChunk]]:
    request = CompletionRequest(model=model, messages=messages, **fields)
    chunks = [chunk async for chunk in DemoClient(delay=0, role_reply=role_reply).stream(request)]
    return "".join(c.text for c in chunks if isinstance(c, TextDelta)), chunks


def answers_for(prompt: str) -> list[PanelAnswerText]:
    return [
        PanelAnswerText(seat=seat, model=model, content=panel_answer(model=model, prompt=prompt))
        for seat, model in enumerate(PANEL, start=1)
    ]


async def test_panel_answers_are_deterministic_and_stream_word_by_word_with_usage() -> None:
    messages = [ChatMessage(role="user", content=QUESTION)]

    first, chunks = await reply("demo/atlas", messages)
    second, _ = await reply("demo/atlas", messages)

    assert first == second and len(first.split()) > 40
    assert sum(isinstance(c, TextDelta) for c in chunks) == len(first.split())
    usage = next(c for c in chunks if isinstance(c, UsageReport)).usage
    assert usage.cost == 0.0
    assert usage.completion_tokens >= len(first.split()) and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_the_three_panel_models_differ_in_substance_and_talk_about_the_question() -> None:
    answers = {a.model: a.content for a in answers_for(QUESTION)}

    assert len(set(answers.values())) == 3
    for text in answers.values():
        assert "PostgreSQL" in text and "MySQL" in text and "**Recommendation:**" in text
    assert "|---|" in answers["demo/cedar"], "one answer carries a Markdown table"
    recommendations = {text.split("**Recommendation:**")[1].strip() for text in answers.values()}
    assert len(recommendations) == 3


def test_different_prompts_give_different_answers() -> None:
    assert panel_answer(model="demo/atlas", prompt="How should I learn Rust?") != panel_answer(
        model="demo/atlas", prompt="How should I plan a garden?"
    )


def test_the_demo_judge_computes_the_analysis_from_the_answers_it_sees() -> None:
    analysis = analysis_compute(answers=answers_for(QUESTION), question=QUESTION)

    assert len(analysis.consensus) == 2
    assert {item.model for item in analysis.unique_insights} == set(PANEL)
    assert sorted(tuple(p.models) for p in analysis.partial_coverage) == [
        ("demo/atlas", "demo/cedar"),
        ("demo/birch", "demo/cedar"),
    ]
    (contradiction,) = analysis.contradictions
    assert "PostgreSQL" in contradiction.topic and "MySQL" in contradiction.topic
    assert [s.model for s in contradiction.stances] == PANEL
    assert 1 <= len(analysis.blind_spots) <= 2
    everything = " ".join(a.content.lower() for a in answers_for(QUESTION))
    keys = dict(CONSIDERATIONS)
    assert all(not any(key in everything for key in keys[spot]) for spot in analysis.blind_spots)


def test_the_demo_judge_analysis_changes_when_the_answers_change() -> None:
    answers = answers_for(QUESTION)
    other = [
        PanelAnswerText(seat=1, model="vendor/x", content="- Use SQLite until it hurts.\n- Backups matter."),
        PanelAnswerText(seat=2, model="vendor/y", content="- Backups matter.\n- Security first."),
    ]

    first = analysis_compute(answers=answers, question=QUESTION)
    second = analysis_compute(answers=other, question=QUESTION)

    assert first != second
    assert second.consensus == ["Backups matter."]
    assert {(u.model, u.insight) for u in second.unique_insights} == {
        ("vendor/x", "Use SQLite until it hurts."),
        ("vendor/y", "Security first."),
    }
    assert "Backups and a tested way to restore them" not in second.blind_spots


async def test_the_demo_judge_returns_valid_json_with_and_without_structured_output() -> None:
    messages = judge_messages(prompt=QUESTION, history=[], answers=answers_for(QUESTION))

    structured, _ = await reply(
        "demo/judge", messages, response_format=analysis_response_format(), temperature=0
    )
    plain, _ = await reply("demo/judge", messages)

    assert json.loads(structured)["consensus"]
    assert plain.startswith("```json") and analysis_parse(plain) == analysis_parse(structured)
    labels = {s.model for c in analysis_parse(structured).contradictions for s in c.stances}
    assert labels == set(PANEL)


async def test_the_demo_judge_repairs_when_asked() -> None:
    messages = judge_messages(prompt=QUESTION, history=[], answers=answers_for(QUESTION))
    repair = judge_repair_messages(judge=messages, reply="{broken", error="invalid JSON")

    text, _ = await reply("demo/judge", repair)

    assert analysis_parse(text) == analysis_compute(answers=answers_for(QUESTION), question=QUESTION)


async def test_the_demo_writer_fuses_from_the_analysis_or_says_there_is_none() -> None:
    answers = answers_for(QUESTION)
    analysis = analysis_compute(answers=answers, question=QUESTION)

    fused, _ = await reply(
        "demo/writer", writer_messages(prompt=QUESTION, history=[], answers=answers, analysis=analysis)
    )
    degraded, _ = await reply(
        "demo/writer",
        writer_messages(
            prompt=QUESTION,
            history=[],
            answers=answers,
            analysis=None,
            degraded_reason="judge_not_valid_json: invalid JSON",
        ),
    )

    assert analysis.consensus[0] in fused
    assert analysis.unique_insights[0].insight in fused and "Where they disagree" in fused
    assert analysis.blind_spots[0] in fused
    assert "No analysis was available (judge_not_valid_json)" in degraded
    assert all(model in degraded for model in PANEL)


async def test_max_tokens_cuts_a_demo_answer_short() -> None:
    text, chunks = await reply("demo/cedar", [ChatMessage(role="user", content=QUESTION)], max_tokens=10)

    assert 0 < len(text.split()) <= 8
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason == "length"


async def test_an_unknown_demo_model_is_refused() -> None:
    with pytest.raises(UnknownModelError) as caught:
        await reply("demo/nobody", [ChatMessage(role="user", content="Hi")])

    assert caught.value.status_code == 404


async def test_the_gateway_built_from_settings_gives_the_demo_judge_its_words(settings: Any) -> None:
    settings.DEMO_MODEL_DELAY = 0
    messages = judge_messages(prompt=QUESTION, history=[], answers=answers_for(QUESTION))
    request = CompletionRequest(model="demo/judge", messages=messages)

    chunks = [chunk async for chunk in gateway_from_settings().client_for("demo/judge").stream(request)]

    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert analysis_parse(text) == analysis_compute(answers=answers_for(QUESTION), question=QUESTION)


async def test_without_their_words_the_demo_judge_and_writer_answer_as_the_analyst() -> None:
    messages = judge_messages(prompt=QUESTION, history=[], answers=answers_for(QUESTION))
    request = CompletionRequest(model="demo/judge", messages=messages)

    chunks = [chunk async for chunk in DemoClient(delay=0).stream(request)]

    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert text == panel_answer(model="demo/cedar", prompt=messages[-1].content or "").strip()


def test_the_catalog_entries_are_labelled_demo_and_free() -> None:
    assert [m.id for m in DEMO_MODELS] == [*PANEL, "demo/judge", "demo/writer"]
    assert all(m.is_demo and m.provider == "demo" and m.prompt_price == 0 for m in DEMO_MODELS)
    assert DEMO_MODELS[0].name == "Atlas (demo)"
    assert [m.id for m in DEMO_MODELS if m.supports_structured_output] == ["demo/judge"]


@pytest.mark.parametrize("prompt", [QUESTION, "How should I learn Rust as a Python developer?", "hi"])
async def test_a_whole_demo_run_fuses_a_computed_analysis(demo_gateway: FakeGateway, prompt: str) -> None:
    request = fusion_request(seats=PANEL, prompt=prompt, judge="demo/judge", writer="demo/writer")

    events = await events_collect(run_fusion(request, gateway=demo_gateway))

    assert len(of_type(events, SeatDone)) == 3
    answers = [
        PanelAnswerText(seat=e.seat, model=e.model, content=e.content)
        for e in events
        if isinstance(e, SeatDone)
    ]
    done = of_type(events, AnalysisDone)[0]
    assert isinstance(done, AnalysisDone)
    assert done.analysis == analysis_compute(answers=sorted(answers, key=lambda a: a.seat), question=prompt)
    final = of_type(events, FinalDone)[0]
    assert isinstance(final, FinalDone) and done.analysis.consensus[0] in final.content
    assert isinstance(events[-1], RunDone) and events[-1].totals.usage.cost == 0.0


async def test_the_demo_judge_can_also_write_as_in_self_fusion(demo_gateway: FakeGateway) -> None:
    request = fusion_request(seats=PANEL, prompt=QUESTION, judge="demo/judge", writer="demo/judge")

    events = await events_collect(run_fusion(request, gateway=demo_gateway))

    final = of_type(events, FinalDone)[0]
    assert final.content.startswith("## PostgreSQL or MySQL: the fused answer")
