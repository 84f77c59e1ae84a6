"""The loopback fake upstream itself: other suites and the benchmarks rely on how it behaves."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx

from apps.fusion.schemas import Analysis
from apps.providers.base import ChatMessage, CompletionRequest, TextDelta
from apps.providers.openai_compat import OpenAICompatClient
from tests.fakes.upstream import FakeUpstream, ModelScript


def _body(model: str, prompt: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def test_it_keeps_connections_alive_across_requests(fake_upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            reply = await client.post(f"{fake_upstream.base_url}/chat/completions", json=_body("a/b", "hi"))
            assert reply.status_code == 200
        async with client.stream(
            "POST", f"{fake_upstream.base_url}/chat/completions", json=_body("a/b", "hi", stream=True)
        ) as streamed:
            assert streamed.headers["content-type"] == "text/event-stream"
            lines = [line async for line in streamed.aiter_lines()]
        await client.get(f"{fake_upstream.base_url}/models")

    assert fake_upstream.connections_opened == 1
    assert lines[0] == ": OPENROUTER PROCESSING"
    assert lines[-2] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert all(isinstance(chunk["x_sent_at"], float) for chunk in chunks)
    assert len(fake_upstream.requests) == 5


async def test_unscripted_models_answer_deterministically_from_the_prompt(
    fake_upstream: FakeUpstream,
) -> None:
    async with httpx.AsyncClient(base_url=fake_upstream.base_url) as client:
        first = (await client.post("/chat/completions", json=_body("x/one", "Tea or coffee?"))).json()
        again = (await client.post("/chat/completions", json=_body("x/one", "Tea or coffee?"))).json()
        other = (await client.post("/chat/completions", json=_body("x/two", "Tea or coffee?"))).json()

    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]
    assert "Tea or coffee?" in text
    assert first["usage"]["completion_tokens"] > 0


async def test_a_judge_request_gets_a_valid_analysis_naming_the_panel(fake_upstream: FakeUpstream) -> None:
    prompt = (
        "Answers from the panel.\n[openai/gpt-5.5]\nYes.\n[~anthropic/claude-opus-latest]\nNo.\n"
        "See https://example.com/docs/page for more."
    )
    schema_format = {"type": "json_schema", "json_schema": {"name": "analysis", "schema": {}}}
    async with httpx.AsyncClient(base_url=fake_upstream.base_url) as client:
        reply = await client.post(
            "/chat/completions", json=_body("judge/model", prompt, response_format=schema_format)
        )

    analysis = Analysis.model_validate_json(reply.json()["choices"][0]["message"]["content"])
    named = {insight.model for insight in analysis.unique_insights}
    assert named == {"openai/gpt-5.5", "~anthropic/claude-opus-latest"}
    assert {stance.model for stance in analysis.contradictions[0].stances} == named


async def test_scripts_can_change_per_request_and_fail_the_first_times(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("a/list", [ModelScript(text="first"), ModelScript(text="then this")])
    fake_upstream.script("a/flaky", ModelScript(text="ok", error_status=503, fail_times=1, retry_after=2))
    async with httpx.AsyncClient(base_url=fake_upstream.base_url) as client:
        texts = [
            (await client.post("/chat/completions", json=_body("a/list", "x"))).json()["choices"][0][
                "message"
            ]
            for _ in range(3)
        ]
        failed = await client.post("/chat/completions", json=_body("a/flaky", "x"))
        recovered = await client.post("/chat/completions", json=_body("a/flaky", "x"))

    assert [t["content"] for t in texts] == ["first", "then this", "then this"]
    assert failed.status_code == 503 and failed.headers["retry-after"] == "2"
    assert failed.json()["error"]["code"] == 503
    assert recovered.status_code == 200


async def test_a_required_key_is_checked(fake_upstream: FakeUpstream) -> None:
    fake_upstream.require_key = "sk-right"
    async with httpx.AsyncClient(base_url=fake_upstream.base_url) as client:
        refused = await client.post("/chat/completions", json=_body("a/b", "x"))
        allowed = await client.post(
            "/chat/completions", json=_body("a/b", "x"), headers={"Authorization": "Bearer sk-right"}
        )
    assert refused.status_code == 401 and allowed.status_code == 200


async def test_it_paces_tokens_and_serves_many_streams_at_once(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("slow/model", ModelScript(text="a b c d e f", tokens_per_s=50))
    client = OpenAICompatClient(base_url=fake_upstream.base_url)
    request = CompletionRequest(model="slow/model", messages=[ChatMessage(role="user", content="go")])

    async def run() -> str:
        return "".join([c.text async for c in client.stream(request) if isinstance(c, TextDelta)])

    started = time.monotonic()
    answers = await asyncio.gather(*(run() for _ in range(50)))
    elapsed = time.monotonic() - started

    assert answers == ["a b c d e f"] * 50
    assert fake_upstream.max_active_streams == 50
    assert 0.1 <= elapsed < 3  # five pauses of 20 ms each, all streams in parallel


def test_it_runs_in_a_thread_for_sync_callers(fake_upstream_thread: FakeUpstream) -> None:
    reply = httpx.post(f"{fake_upstream_thread.base_url}/chat/completions", json=_body("a/b", "hello"))
    assert reply.status_code == 200
    assert fake_upstream_thread.requests_for("a/b")[0].body["messages"][0]["content"] == "hello"


def test_it_runs_from_the_command_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake upstream at http://127.0.0.1:")
        base_url = line.split(" at ", 1)[1].strip()
        assert httpx.get(f"{base_url}/models").json()["data"]
    finally:
        process.terminate()
        process.wait(10)
