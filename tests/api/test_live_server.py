"""The official ``openai`` client against a real server: Daphne over TCP, OpenRouter on a loopback fake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from apps.accounts.api_keys import api_key_revoke
from apps.chat.models import Conversation, Turn
from apps.panels.presets import PRESETS
from tests.api.conftest import LIVE_RATE_LIMIT, Caller
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest
from tests.live_server import LiveServer

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
FUSION: Any = {"type": "fusion"}
NOTE: Any = {
    "type": "function",
    "function": {
        "name": "save_note",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


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


def stream_parts(stream: Any) -> tuple[str, list[str], Any]:
    text, progress, last = [], [], None
    for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            last = chunk
        else:
            progress.append(chunk.model_extra["fusion_progress"]["type"])
    return "".join(text), progress, last


def test_the_fusion_model_on_the_loopback_upstream(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    completion = live_openai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}]
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    assert fusion["panel"] == "fusion/quality" and fusion["demo"] is False and fusion["status"] == "ok"
    assert len(fusion["responses"]) == 3
    assert completion.choices[0].message.content
    assert len(upstream.completions()) == 5


def test_the_fusion_model_streams_from_the_loopback_upstream(
    live_openai: OpenAI, upstream: FakeUpstream
) -> None:
    stream = live_openai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text, progress, last = stream_parts(stream)
    assert text and progress.count("seat.done") == 3
    assert last.model_extra["fusion"]["panel"] == "fusion/quality" and last.usage.total_tokens > 0
    assert len(upstream.completions()) == 5


def test_the_server_tool_forced_on_a_demo_model_streams(live_openai: OpenAI) -> None:
    stream = live_openai.chat.completions.create(
        model="demo/writer",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[FUSION],
        tool_choice="required",
        extra_body={"plugins": [{"id": "fusion", "preset": "demo"}]},
        stream=True,
    )
    text, progress, last = stream_parts(stream)
    assert text and "analysis.done" in progress
    assert last.model_extra["fusion"]["demo"] is True and len(last.model_extra["fusion"]["responses"]) == 3


def test_the_fusion_model_streams_the_demo_panel(live_openai: OpenAI, live_caller: Caller) -> None:
    stream = live_openai.chat.completions.create(
        model="fusion/demo", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text, progress, last = stream_parts(stream)
    assert "fused answer" in text
    assert progress.count("seat.done") == 3 and "analysis.done" in progress
    assert last.choices[0].finish_reason == "stop" and last.model_extra["fusion"]["demo"] is True
    # Saved as the key owner's conversation, made through the API.
    conversation = Conversation.objects.get(owner=live_caller.user)
    assert conversation.source == "api"
    assert Turn.objects.get(conversation=conversation).final_text == text


def test_the_server_tool_streamed_and_not(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script("vendor/outer", outer)
    plugin = {"id": "fusion", "analysis_models": ["demo/atlas", "vendor/seat"], "model": "demo/judge"}
    completion = live_openai.chat.completions.create(
        model="vendor/outer",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[FUSION],
        extra_body={"plugins": [plugin]},
    )
    assert completion.choices[0].message.content == "The panel of 2 says: it depends."
    assert completion.model_extra["fusion"]["demo"] is True  # type: ignore[index]

    stream = live_openai.chat.completions.create(
        model="vendor/outer",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[FUSION],
        extra_body={"plugins": [plugin]},
        stream=True,
    )
    text, progress, last = stream_parts(stream)
    assert text == "The panel of 2 says: it depends."
    assert "analysis.done" in progress and last.choices[0].finish_reason == "stop"


def test_the_callers_function_tools_pass_through(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        "vendor/outer", ModelScript(tool_calls=[{"name": "save_note", "arguments": {"text": "hi"}}])
    )
    completion = live_openai.chat.completions.create(
        model="vendor/outer", messages=[{"role": "user", "content": "Note hi"}], tools=[NOTE, FUSION]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "save_note"


def test_a_plain_demo_model_streams(live_openai: OpenAI) -> None:
    stream = live_openai.chat.completions.create(
        model="demo/cedar", messages=[{"role": "user", "content": "Tabs or spaces?"}], stream=True
    )
    text, progress, last = stream_parts(stream)
    assert text and progress == [] and last.choices[0].finish_reason == "stop"


def test_errors_reach_the_client_as_openai_errors(live_openai: OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError):
        live_openai.chat.completions.create(model="fusion/nope", messages=[{"role": "user", "content": "Hi"}])
    for seat in ("vendor/x", "vendor/y"):
        upstream.script(seat, ModelScript(error_status=503))
    plugin = {"id": "fusion", "analysis_models": ["vendor/x", "vendor/y"]}
    with pytest.raises(openai.InternalServerError) as caught:
        live_openai.chat.completions.create(
            model="fusion", messages=[{"role": "user", "content": "Hi"}], extra_body={"plugins": [plugin]}
        )
    assert caught.value.status_code == 502
    assert caught.value.body["failure_reason"] == "all_panels_failed"  # type: ignore[index]
    stream = live_openai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"plugins": [plugin]},
        stream=True,
    )
    with pytest.raises(openai.APIError, match="All panel models failed"):
        stream_parts(stream)


def test_a_revoked_key_is_refused(live_openai: OpenAI, live_caller: Caller) -> None:
    assert live_openai.models.list().data[0].id == "fusion"
    api_key_revoke(user=live_caller.user, key_id=live_caller.user.api_keys.get().pk)
    with pytest.raises(openai.AuthenticationError):
        live_openai.models.list()


def test_the_rate_limit_holds_on_the_real_server(live_api: LiveServer, live_caller: Caller) -> None:
    headers = {"Authorization": f"Bearer {live_caller.key}"}
    with httpx.Client(base_url=live_api.api_url, headers=headers) as client:
        statuses = [client.get("/models").status_code for _ in range(LIVE_RATE_LIMIT)]
        refused = client.get("/models")
    assert statuses == [200] * LIVE_RATE_LIMIT
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


SLOW = ModelScript(text="word " * 400, tokens_per_s=20)  # twenty seconds: still going when the caller leaves


def _turn_ended(turn_id: int, timeout: float = 10.0) -> Turn:
    deadline = time.monotonic() + timeout
    while (turn := Turn.objects.get(pk=turn_id)).status == Turn.Status.RUNNING:
        assert time.monotonic() < deadline, "the turn is still running after the caller left"
        time.sleep(0.05)
    return turn


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": "fusion"}, id="the fusion model"),
        pytest.param(
            {
                "model": "vendor/outer",
                "tools": [FUSION],
                "tool_choice": "required",
                "plugins": [{"id": "fusion", "analysis_models": ["vendor/slow-a", "vendor/slow-b"]}],
            },
            id="the server tool",
        ),
    ],
)
def test_a_caller_who_leaves_mid_stream_cancels_the_turn(
    live_api: LiveServer, live_caller: Caller, upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    for model in ("vendor/slow-a", "vendor/slow-b", *PRESETS["quality"]["seats"]):
        upstream.script(model, SLOW)
    upstream.script("vendor/outer", outer)
    request = {**body, "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    headers = {"Authorization": f"Bearer {live_caller.key}"}
    with (
        httpx.Client(base_url=live_api.api_url, headers=headers, timeout=30) as client,
        client.stream("POST", "/chat/completions", json=request) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            progress = json.loads(line[6:]).get("fusion_progress") if line.startswith("data: {") else None
            if progress and progress["type"] == "seat.started":
                break
        # Leaving the block closes the connection with the answer half-way: the caller is gone.
    turn = _turn_ended(Turn.objects.get(conversation__owner=live_caller.user).pk)
    assert turn.status == Turn.Status.CANCELLED
    assert turn.failure_reason == "cancelled"
