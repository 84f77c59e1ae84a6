"""Web tools in the panel: a seat calls a tool, gets the result, and answers; budgets, failures, sources."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import (
    SeatDelta,
    SeatDone,
    SeatFailed,
    SeatReasoningDelta,
    SeatToolCall,
    SeatToolResult,
    Source,
)
from apps.fusion.tools import ToolOutcome
from tests.fusion.conftest import FakeClient, FakeGateway, Script, events_collect, fusion_request, of_type

FETCH = ("web_fetch", json.dumps({"url": "https://docs.example.org/guide"}))
GUIDE = Source(url="https://docs.example.org/guide", title="The guide")


class FakeToolbox:
    """Answers every call with a page; ``fail`` makes calls fail, ``gate`` holds them until set."""

    def __init__(self, *, fail: bool = False, gate: asyncio.Event | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.calls: list[tuple[str, str]] = []

    def definitions(self, model: str, *, max_calls: int) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "web_fetch", "parameters": {"type": "object"}}}]

    def describe(self, name: str, arguments: str) -> str:
        return str(json.loads(arguments).get("url", ""))

    async def run(self, name: str, arguments: str) -> ToolOutcome:
        self.calls.append((name, arguments))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            return ToolOutcome(
                ok=False, content="web_fetch failed: refused", detail="refused: private address"
            )
        return ToolOutcome(
            ok=True, content="<<<WEB PAGE>>> The guide says 42. <<<END>>>", detail="read", sources=[GUIDE]
        )


def _tool_then_answer(fake: FakeClient, model: str = "fake/a") -> None:
    fake.script(
        model,
        Script(chunks=["Let me check."], tool_calls=[FETCH]),
        Script(chunks=["The ", "answer ", "is 42."]),
    )


async def test_a_seat_that_calls_a_tool_gets_the_result_and_then_answers(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)
    toolbox = FakeToolbox()

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=toolbox))

    assert toolbox.calls == [FETCH]
    first, second = fake.calls_for("fake/a")
    assert first.request.tools == toolbox.definitions("fake/a", max_calls=4)
    assistant, tool = second.request.messages[-2:]
    assert assistant.role == "assistant" and assistant.content == "Let me check."
    assert assistant.tool_calls == [
        {"id": "call-0", "type": "function", "function": {"name": "web_fetch", "arguments": FETCH[1]}}
    ]
    assert tool.role == "tool" and tool.tool_call_id == "call-0" and "42" in (tool.content or "")
    own = [event.type for event in events if getattr(event, "seat", None) == 1]
    assert own.index("seat.tool_call") < own.index("seat.tool_result") < own.index("seat.done")
    call = of_type(events, SeatToolCall)[0]
    assert (call.seat, call.name, call.detail) == (1, "web_fetch", "https://docs.example.org/guide")
    result = of_type(events, SeatToolResult)[0]
    assert result.ok and result.sources == [GUIDE] and result.call_id == call.call_id
    done = next(event for event in of_type(events, SeatDone) if event.seat == 1)
    assert done.content == "Let me check.\n\nThe answer is 42."
    assert done.sources == [GUIDE]


async def test_reasoning_before_and_after_a_tool_call_is_one_contiguous_text(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script(
        "fake/a",
        Script(reasoning=["I should look. "], chunks=["Let me check."], tool_calls=[FETCH]),
        Script(reasoning=["It says 42."], chunks=["The answer is 42."]),
    )

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox()))

    reasoning = [e for e in events if isinstance(e, SeatReasoningDelta) and e.seat == 1]
    assert [(r.offset, r.text) for r in reasoning] == [(0, "I should look. "), (15, "It says 42.")]


async def test_text_before_and_after_a_tool_call_streams_as_one_contiguous_answer(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox()))

    deltas = [event for event in of_type(events, SeatDelta) if event.seat == 1]
    text = ""
    for delta in deltas:
        assert delta.offset == len(text)
        text += delta.text
    done = next(event for event in of_type(events, SeatDone) if event.seat == 1)
    assert text == done.content


async def test_the_judge_and_the_writer_see_each_seats_sources_inside_its_answer_block(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)

    await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox()))

    for model in ("fake/judge", "fake/writer"):
        prompt = fake.calls_for(model)[0].request.messages[-1].content or ""
        block = prompt[prompt.index("<<<ANSWER seat=1") : prompt.index("<<<END ANSWER seat=1>>>")]
        assert "https://docs.example.org/guide" in block and '"The guide"' in block


async def test_tool_calls_stop_at_max_tool_calls_and_the_model_must_then_answer_without_tools(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    # A model that would call tools forever.
    fake.script("fake/a", Script(chunks=[], tool_calls=[FETCH, FETCH]))
    toolbox = FakeToolbox()

    events = await events_collect(
        run_fusion(fusion_request(max_tool_calls=3), gateway=gateway, toolbox=toolbox)
    )

    assert len(toolbox.calls) == 3
    requests = [call.request for call in fake.calls_for("fake/a")]
    assert [request.tools is not None for request in requests] == [True, True, False]
    assert len(of_type(events, SeatToolResult)) == 3
    assert any(event.seat == 1 for event in of_type(events, SeatDone))


async def test_a_failed_tool_call_is_reported_and_the_seat_still_answers(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)

    events = await events_collect(
        run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox(fail=True))
    )

    result = of_type(events, SeatToolResult)[0]
    assert not result.ok and result.detail == "refused: private address" and result.sources == []
    tool_message = fake.calls_for("fake/a")[1].request.messages[-1]
    assert tool_message.content == "web_fetch failed: refused"
    done = next(event for event in of_type(events, SeatDone) if event.seat == 1)
    assert done.content.endswith("is 42.") and done.sources == []


@pytest.mark.parametrize("how", ["web_tools off", "no toolbox", "model without tools"])
async def test_no_tools_are_offered_when_they_are_off_or_the_model_cannot_call_them(
    fake: FakeClient, how: str
) -> None:
    gateway = FakeGateway(fake)
    if how == "model without tools":
        gateway.supports_tools = lambda model: False  # type: ignore[method-assign]
    request = fusion_request(web_tools=how != "web_tools off")
    toolbox = None if how == "no toolbox" else FakeToolbox()

    await events_collect(run_fusion(request, gateway=gateway, toolbox=toolbox))

    assert all(call.request.tools is None for call in fake.calls)


async def test_a_seat_that_used_tools_is_billed_for_every_call_it_made(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox()))

    done = next(event for event in of_type(events, SeatDone) if event.seat == 1)
    # Two calls of 10 prompt + 5 completion tokens each.
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (20, 10)
    alone = next(event for event in of_type(events, SeatDone) if event.seat == 2)
    assert done.usage.cost == pytest.approx(2 * (alone.usage.cost or 0))


async def test_a_deadline_during_a_tool_call_cancels_it_and_keeps_what_the_seat_said(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    _tool_then_answer(fake)
    toolbox = FakeToolbox(gate=asyncio.Event())  # the tool never returns

    events = await asyncio.wait_for(
        events_collect(run_fusion(fusion_request(deadline_s=0.3), gateway=gateway, toolbox=toolbox)), 5
    )

    failed = next(event for event in of_type(events, SeatFailed) if event.seat == 1)
    assert failed.reason == "missing" and failed.partial_text == "Let me check."
    assert events[-1].type == "run.done"


async def test_each_call_has_its_own_id_in_the_events_even_when_the_model_reuses_one(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    # The fake names every call "call-0", reply after reply.
    fake.script(
        "fake/a",
        Script(chunks=[], tool_calls=[("web_search", json.dumps({"query": "x"}))]),
        Script(chunks=[], tool_calls=[FETCH]),
        Script(chunks=["Done."]),
    )

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway, toolbox=FakeToolbox()))

    calls = of_type(events, SeatToolCall)
    assert [call.name for call in calls] == ["web_search", "web_fetch"]
    assert len({call.call_id for call in calls}) == 2
    assert [result.call_id for result in of_type(events, SeatToolResult)] == [call.call_id for call in calls]
    # On the wire each tool message answers the model's own id.
    last = fake.calls_for("fake/a")[2].request.messages
    assert [m.tool_call_id for m in last if m.role == "tool"] == ["call-0", "call-0"]
