"""The official ``openai`` client's ``responses.create`` against a real server (Daphne over TCP, OpenRouter on
a loopback fake): a plain model, the fusion slug, the plugin and the server tool, streamed and not; errors;
and the chat-completions stream helper with the panel's deltas in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from apps.chat.models import Turn
from apps.panels.presets import PRESETS
from tests.api.conftest import Caller
from tests.api.test_live_server import SLOW, _turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest
from tests.live_server import LiveServer

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
FUSION_TOOL: Any = {"type": "openrouter:fusion"}
DEMO_PLUGIN = {"id": "fusion", "analysis_models": ["demo/atlas", "vendor/seat"], "model": "demo/judge"}
PANEL_TEXT = {"fusion": {"stream_panel": True}}


@pytest.fixture
def upstream(live_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    yield live_upstream
    live_upstream.scripts.clear()
    live_upstream.requests.clear()


def outer(request: RecordedRequest) -> ModelScript:
    results = [json.loads(m["content"]) for m in request.body["messages"] if m["role"] == "tool"]
    if not results:
        return ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}])
    return ModelScript(text=f"The panel of {len(results[0]['responses'])} says: it depends.")


def streamed(stream: Any) -> tuple[list[Any], str, Any]:
    """Every event of a ``responses.create(stream=True)``, the text from its deltas, the final response."""
    events = list(stream)
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert events[-1].type == "response.completed"
    return events, text, events[-1].response


def test_a_plain_model_with_and_without_streaming(live_openai: OpenAI) -> None:
    response = live_openai.responses.create(model="demo/cedar", input="Tabs or spaces?")
    assert response.status == "completed" and response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.total_tokens > 0
    assert response.usage.model_extra["cost"] == 0.0  # type: ignore[index]

    events, text, final = streamed(
        live_openai.responses.create(
            model="demo/cedar",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Tabs or spaces?"}]}],
            instructions="Be brief.",
            stream=True,
        )
    )
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created" and text == final.output_text


def test_the_fusion_slug_on_the_loopback_upstream(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    response = live_openai.responses.create(model="fusion", input=QUESTION)
    fusion = response.model_extra["fusion"]  # type: ignore[index]
    assert fusion["panel"] == "fusion/quality" and fusion["status"] == "ok" and len(fusion["responses"]) == 3
    assert [item.type for item in response.output] == ["openrouter:fusion", "message"]
    assert response.output_text and len(upstream.completions()) == 5


# The helper rebuilds the response as the SDK's models, which do not know the ``openrouter:fusion`` item: it
# works, and Pydantic warns while serialising that item.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_the_fusion_slug_streams_the_panel_through_the_stream_helper(live_openai: OpenAI) -> None:
    with live_openai.responses.stream(model="fusion/demo", input=QUESTION, extra_body=PANEL_TEXT) as stream:
        types: list[str] = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.fusion_call.panel.delta" in types
    assert types.count("response.fusion_call.panel.completed") == 3
    assert "fused answer" in final.output_text
    assert final.model_extra["fusion"]["demo"] is True  # type: ignore[index]


def test_the_plugin_streamed_and_not(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    response = live_openai.responses.create(
        model="fusion", input=QUESTION, extra_body={"plugins": [DEMO_PLUGIN]}
    )
    assert response.model_extra["fusion"]["panel"] == "fusion/quality+plugin"  # type: ignore[index]
    models = [r["model"] for r in response.model_extra["fusion"]["responses"]]  # type: ignore[index]
    assert models == ["demo/atlas", "vendor/seat"]

    events, text, final = streamed(
        live_openai.responses.create(
            model="fusion", input=QUESTION, extra_body={"plugins": [DEMO_PLUGIN]}, stream=True
        )
    )
    added = [event.model for event in events if event.type == "response.fusion_call.panel.added"]
    assert sorted(added) == ["demo/atlas", "vendor/seat"] and text == final.output_text


def test_the_server_tool_streamed_and_not(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script("vendor/outer", outer)
    response = live_openai.responses.create(
        model="vendor/outer", input=QUESTION, tools=[FUSION_TOOL], extra_body={"plugins": [DEMO_PLUGIN]}
    )
    assert response.output_text == "The panel of 2 says: it depends."
    assert response.output[0].type == "openrouter:fusion"

    events, text, final = streamed(
        live_openai.responses.create(
            model="vendor/outer",
            input=QUESTION,
            tools=[FUSION_TOOL],
            extra_body={"plugins": [DEMO_PLUGIN], **PANEL_TEXT},
            stream=True,
        )
    )
    types = [event.type for event in events]
    assert text == "The panel of 2 says: it depends." and final.status == "completed"
    assert "response.fusion_call.panel.delta" in types
    assert types.index("response.fusion_call.completed") < types.index("response.output_text.delta")


def test_function_tools_round_trip_through_the_client(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    note: Any = {
        "type": "function",
        "name": "save_note",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    }
    upstream.script(
        "vendor/outer", ModelScript(tool_calls=[{"name": "save_note", "arguments": {"text": "hi"}}])
    )
    first = live_openai.responses.create(model="vendor/outer", input="Note hi", tools=[note])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "save_note"
    upstream.script("vendor/outer", ModelScript(text="Saved."))
    # The SDK's documented way to go on: the earlier output as it came, then the function's result.
    second = live_openai.responses.create(
        model="vendor/outer",
        tools=[note],
        input=[
            {"role": "user", "content": "Note hi"},
            *first.output,  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "saved"},
        ],
    )
    assert second.output_text == "Saved."
    messages = upstream.completions()[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == messages[2]["tool_call_id"] == call.call_id


def test_a_failed_seat_does_not_end_the_clients_stream(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script("vendor/seat", ModelScript(error_status=503, error_message="no capacity"))
    events, text, final = streamed(
        live_openai.responses.create(
            model="fusion", input=QUESTION, extra_body={"plugins": [DEMO_PLUGIN]}, stream=True
        )
    )
    (failed,) = [event for event in events if event.type == "response.fusion_call.panel.failed"]
    assert failed.model == "vendor/seat" and failed.status_code == 503
    assert text and final.model_extra["fusion"]["failed_models"][0]["model"] == "vendor/seat"


def test_errors_reach_the_client_as_openai_errors(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError):
        live_openai.responses.create(model="fusion/nope", input="Hi")
    with pytest.raises(openai.BadRequestError, match="whole conversation"):
        live_openai.responses.create(model="demo/cedar", input="Hi", previous_response_id="resp_1")
    for seat in ("vendor/x", "vendor/y"):
        upstream.script(seat, ModelScript(error_status=503))
    plugin = {"id": "fusion", "analysis_models": ["vendor/x", "vendor/y"]}
    with pytest.raises(openai.InternalServerError) as caught:
        live_openai.responses.create(model="fusion", input="Hi", extra_body={"plugins": [plugin]})
    assert caught.value.status_code == 502
    assert caught.value.body["failure_reason"] == "all_panels_failed"  # type: ignore[index]
    # Once streaming, OpenAI's way: an error event, then response.failed (the client raises nothing).
    events: list[Any] = list(
        live_openai.responses.create(
            model="fusion", input="Hi", extra_body={"plugins": [plugin]}, stream=True
        )
    )
    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "all_panels_failed"


def test_the_chat_stream_helper_ignores_the_panels_deltas(live_openai: OpenAI) -> None:
    with live_openai.chat.completions.stream(
        model="fusion/demo", messages=[{"role": "user", "content": QUESTION}], extra_body=PANEL_TEXT
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        completion = stream.get_final_completion()
    progress = [chunk.model_extra["fusion_progress"] for chunk in chunks if not chunk.choices]  # type: ignore[index]
    seat_text = "".join(p["text"] for p in progress if p["type"] == "seat.delta")
    answers = chunks[-1].model_extra["fusion"]["responses"]  # type: ignore[index]
    assert len(seat_text) == sum(len(answer["content"]) for answer in answers) > 0
    assert "fused answer" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"


def test_a_caller_who_leaves_the_stream_cancels_the_turn(
    live_api: LiveServer, live_caller: Caller, upstream: FakeUpstream
) -> None:
    for model in PRESETS["quality"]["seats"]:
        upstream.script(model, SLOW)
    headers = {"Authorization": f"Bearer {live_caller.key}"}
    body = {"model": "fusion", "input": QUESTION, "stream": True}
    with (
        httpx.Client(base_url=live_api.api_url, headers=headers, timeout=30) as client,
        client.stream("POST", "/responses", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"].endswith("panel.added"):
                break
    turn = _turn_ended(Turn.objects.get(conversation__owner=live_caller.user).pk)
    assert turn.status == Turn.Status.CANCELLED and turn.failure_reason == "cancelled"


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block of the README after the paragraph that starts with ``heading``."""
    text = README.read_text()
    found = re.search(rf"^```{language}\n(.*?)^```", text[text.index(heading) :], re.MULTILINE | re.DOTALL)
    assert found is not None, f"no {language} block after {heading}"
    return found.group(1)


def run(command: list[str], server: LiveServer, caller: Caller) -> str:
    """``command`` with the README's two variables exported, as a reader's shell has them."""
    env = {**os.environ, "FR": server.api_url, "FR_KEY": caller.key}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_the_readmes_responses_examples_work_as_written(live_api: LiveServer, live_caller: Caller) -> None:
    shell = run(["bash", "-ec", readme_block("**The Responses API.**", "sh")], live_api, live_caller)
    assert '"object": "response"' in shell and '"status": "completed"' in shell
    assert "event: response.fusion_call.completed" in shell and "event: response.completed" in shell
    python = run(
        [sys.executable, "-c", readme_block("**The Responses API.**", "python")], live_api, live_caller
    )
    assert "fused answer" in python and "[response.fusion_call.analysis.completed]" in python
    panel = run(["bash", "-ec", readme_block("**Following the panel.**", "sh")], live_api, live_caller)
    assert '"type":"seat.delta"' in panel
