"""Any other model id is a plain call through the same providers, the caller's tools passed through."""

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI

from apps.chat.models import Conversation
from apps.providers.demo import panel_answer
from tests.fakes.upstream import FakeUpstream, ModelScript

LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
    },
}


async def test_a_demo_model_answers_without_a_key(oai: AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="demo/birch", messages=[{"role": "user", "content": "Vim or Emacs?"}]
    )
    assert (
        completion.choices[0].message.content
        == panel_answer(model="demo/birch", prompt="Vim or Emacs?").strip()
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.model_extra.get("fusion") is None  # type: ignore[union-attr]


async def test_a_demo_model_streams(oai: AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="demo/birch", messages=[{"role": "user", "content": "Vim or Emacs?"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert len(pieces) > 10
    assert "".join(pieces) == panel_answer(model="demo/birch", prompt="Vim or Emacs?").strip()


async def test_tools_pass_through_and_tool_calls_come_back(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.script("vendor/m", ModelScript(tool_calls=[{"name": "lookup", "arguments": {"word": "fusion"}}]))
    completion = await oai.chat.completions.create(
        model="vendor/m",
        messages=[{"role": "user", "content": "Define fusion"}],
        tools=[LOOKUP],
        tool_choice="auto",
        temperature=0.2,
        max_tokens=50,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id == "call_0"
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"word": "fusion"}
    (sent,) = upstream.completions()
    assert sent.body["tools"] == [LOOKUP] and sent.body["tool_choice"] == "auto"
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 50


async def test_the_tool_result_goes_back_to_the_model(oai: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.script("vendor/m", ModelScript(text="Fusion joins nuclei."))
    completion = await oai.chat.completions.create(
        model="vendor/m",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Define "}, {"type": "text", "text": "fusion"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "joining of nuclei"},
        ],
        tools=[LOOKUP],
    )
    assert completion.choices[0].message.content == "Fusion joins nuclei."
    messages = upstream.completions()[0].body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "user", "content": "Define fusion"}
    assert messages[2]["tool_calls"][0]["function"]["name"] == "lookup"
    assert messages[3] == {"role": "tool", "content": "joining of nuclei", "tool_call_id": "call_0"}


async def test_plain_calls_are_not_saved_as_conversations(oai: AsyncOpenAI) -> None:
    await oai.chat.completions.create(model="demo/atlas", messages=[{"role": "user", "content": "Hi"}])
    assert not await Conversation.objects.aexists()
