"""The OpenAI-compatible client against a real loopback server speaking OpenRouter's protocol."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.fusion.calls import CallProgress, call_stream
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    Finish,
    ModelClient,
    ProviderError,
    ReasoningDelta,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)
from apps.providers.catalog import ModelInfo
from apps.providers.openai_compat import OpenAICompatClient
from tests.fakes.upstream import FakeUpstream, ModelScript

KEY = "sk-or-v1-secret-test-key"


def _client(upstream: FakeUpstream, **overrides: Any) -> OpenAICompatClient:
    options: dict[str, Any] = {
        "base_url": upstream.base_url,
        "api_key": KEY,
        "max_retries": 3,
        "backoff_base": 0.01,
        "read_timeout": 5.0,
        "total_timeout": 10.0,
        "extra_headers": {"HTTP-Referer": "https://fusion.example", "X-OpenRouter-Title": "Fusion Room"},
    }
    options.update(overrides)
    return OpenAICompatClient(**options)


def _request(
    model: str = "vendor/model", prompt: str = "Why is the sky blue?", **extra: Any
) -> CompletionRequest:
    return CompletionRequest(model=model, messages=[ChatMessage(role="user", content=prompt)], **extra)


async def _collect(client: OpenAICompatClient, request: CompletionRequest) -> list[StreamChunk]:
    return [chunk async for chunk in client.stream(request)]


async def _failure(client: OpenAICompatClient, request: CompletionRequest) -> tuple[ProviderError, str]:
    """The error a stream ends with, and the text it yielded before it."""
    text = ""
    with pytest.raises(ProviderError) as caught:
        async for chunk in client.stream(request):
            if isinstance(chunk, TextDelta):
                text += chunk.text
    return caught.value, text


def _text(chunks: list[StreamChunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_it_meets_the_model_client_protocol() -> None:
    client = OpenAICompatClient(base_url="http://127.0.0.1:9/v1")
    assert isinstance(client, ModelClient)
    assert client.is_demo is False


async def test_it_replaces_nul_characters_one_for_one_so_text_can_be_stored(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="<scr\x00ipt> and \x00 more"))

    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "<scr\ufffdipt> and \ufffd more"


async def test_it_streams_text_skipping_comment_keepalives(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="The sky scatters blue light.", latency_s=0.05))
    fake_upstream.comment_interval_s = 0.01

    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "The sky scatters blue light."
    assert sum(isinstance(c, TextDelta) for c in chunks) == 5
    assert isinstance(chunks[-1], Finish)
    assert chunks[-1].reason == "stop"


async def test_it_yields_reasoning_tool_calls_usage_cost_and_the_answering_model(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script(
        "~anthropic/claude-opus-latest",
        ModelScript(
            text="Let me search.",
            reasoning="The user wants facts.",
            tool_calls=[{"id": "call_1", "name": "web_search", "arguments": {"query": "rayleigh"}}],
            served_model="anthropic/claude-opus-4.8",
            cost=0.00095,
            reasoning_tokens=3,
            cached_tokens=2,
        ),
    )
    chunks = await _collect(_client(fake_upstream), _request("~anthropic/claude-opus-latest"))

    assert [c.text for c in chunks if isinstance(c, ReasoningDelta)] == ["The user wants facts."]
    assert _text(chunks) == "Let me search."
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].id == "call_1" and calls[0].name == "web_search"
    assert "".join(c.arguments for c in calls) == '{"query": "rayleigh"}'
    (usage,) = [c.usage for c in chunks if isinstance(c, UsageReport)]
    assert usage.cost == pytest.approx(0.00095)
    assert usage.completion_tokens == 3 + 3 and usage.reasoning_tokens == 3 and usage.cached_tokens == 2
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    finish = chunks[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "tool_calls" and finish.model == "anthropic/claude-opus-4.8"


async def test_it_sends_authorization_attribution_headers_and_a_streaming_body(
    fake_upstream: FakeUpstream,
) -> None:
    request = _request(temperature=0.2, response_format={"type": "json_object"})
    await _collect(_client(fake_upstream), request)

    (seen,) = fake_upstream.completions()
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["http-referer"] == "https://fusion.example"
    assert seen.headers["x-openrouter-title"] == "Fusion Room"
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["temperature"] == 0.2
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.body["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]
    assert "max_tokens" not in seen.body


async def test_it_strips_the_endpoint_prefix_and_sends_no_key_when_none(fake_upstream: FakeUpstream) -> None:
    client = _client(fake_upstream, api_key=None, provider="ollama", strip_prefix="ollama/")
    await _collect(client, _request("ollama/llama3.2"))

    (seen,) = fake_upstream.completions()
    assert seen.body["model"] == "llama3.2"
    assert "authorization" not in seen.headers


async def test_call_stream_assembles_its_text_usage_and_tool_calls_sent_in_pieces(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script(
        "vendor/model",
        ModelScript(
            text="Searching now.", tool_calls=[{"name": "web_fetch", "arguments": {"url": "https://a.b"}}]
        ),
    )
    progress = CallProgress()
    stream = call_stream(client=_client(fake_upstream), request=_request(), progress=progress)
    pieces = [piece async for piece in stream]

    assert "".join(piece.text for piece in pieces) == progress.text == "Searching now."
    assert progress.usage is not None and progress.usage.completion_tokens > 0
    # The fake upstream sends each call's arguments in two deltas.
    assert progress.tool_calls == {
        0: {"id": "call_0", "name": "web_fetch", "arguments": '{"url": "https://a.b"}'}
    }
    assert progress.finish_reason == "tool_calls"


async def test_an_error_chunk_mid_stream_raises_after_the_text_before_it(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        "vendor/model",
        ModelScript(
            text="one two three four five",
            error_mid_stream_after=2,
            error_message="Provider disconnected unexpectedly",
        ),
    )
    error, streamed = await _failure(_client(fake_upstream), _request())

    assert "Provider disconnected unexpectedly" in error.message
    assert error.code == "server_error"
    assert streamed == "one two "
    assert len(fake_upstream.completions()) == 1


async def test_it_retries_429_honouring_retry_after(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        "vendor/model",
        ModelScript(
            text="finally", error_status=429, retry_after="0.3", fail_times=1, error_message="Slow down"
        ),
    )
    started = time.monotonic()
    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "finally"
    assert len(fake_upstream.completions()) == 2
    waited = fake_upstream.completions()[1].received_at - fake_upstream.completions()[0].received_at
    assert waited >= 0.3
    assert time.monotonic() - started < 3


async def test_retry_after_as_an_http_date_is_understood_and_capped(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        "vendor/model",
        ModelScript(error_status=429, retry_after="Wed, 21 Oct 2099 07:28:00 GMT", fail_times=1),
    )
    client = _client(fake_upstream, retry_after_cap=0.2)
    started = time.monotonic()
    await _collect(client, _request())

    assert len(fake_upstream.completions()) == 2
    assert 0.2 <= time.monotonic() - started < 2


async def test_it_retries_503_then_succeeds(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="ok now", error_status=503, fail_times=2))
    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "ok now"
    assert len(fake_upstream.completions()) == 3


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
async def test_it_never_retries_client_errors(fake_upstream: FakeUpstream, status: int) -> None:
    fake_upstream.script("vendor/model", ModelScript(error_status=status, error_message="Nope, not that"))
    error, _ = await _failure(_client(fake_upstream), _request())

    assert error.status_code == status
    assert "Nope, not that" in error.message
    assert not error.retryable
    assert len(fake_upstream.completions()) == 1


async def test_retries_are_bounded(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(error_status=502, error_message="Bad gateway"))
    error, _ = await _failure(_client(fake_upstream, max_retries=2), _request())

    assert error.status_code == 502 and error.retryable
    assert len(fake_upstream.completions()) == 3


async def test_a_retry_that_would_pass_the_deadline_is_not_attempted(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(error_status=429, retry_after="30", fail_times=1))
    started = time.monotonic()
    error, _ = await _failure(_client(fake_upstream, total_timeout=1.0, retry_after_cap=60), _request())

    assert error.status_code == 429
    assert len(fake_upstream.completions()) == 1
    assert time.monotonic() - started < 1


async def test_the_key_is_never_echoed_in_errors(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(error_status=401, error_message=f"Invalid key {KEY}"))
    error, _ = await _failure(_client(fake_upstream), _request())

    assert KEY not in str(error)
    assert KEY not in repr(_client(fake_upstream))
    assert "[redacted]" in error.message


async def test_a_stalled_stream_ends_in_a_timeout_after_the_text_before_it(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="alpha beta gamma delta", stall_after=2))
    started = time.monotonic()
    error, streamed = await _failure(_client(fake_upstream, read_timeout=0.3), _request())

    assert error.code == "timeout"
    assert streamed == "alpha beta "
    assert 0.3 <= time.monotonic() - started < 3
    assert len(fake_upstream.completions()) == 1


async def test_the_total_deadline_bounds_a_slow_but_steady_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="word " * 100, tokens_per_s=20))
    started = time.monotonic()
    error, streamed = await _failure(_client(fake_upstream, read_timeout=5, total_timeout=0.5), _request())

    assert error.code == "timeout" and "0.5s" in error.message
    assert streamed
    assert time.monotonic() - started < 2


async def test_a_malformed_chunk_raises_a_provider_error_after_the_text_before_it(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="good good bad", malformed_after=2))
    error, streamed = await _failure(_client(fake_upstream), _request())

    assert "malformed" in error.message
    assert streamed == "good good "


async def test_a_chunk_of_the_wrong_shape_raises_a_provider_error(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(usage={"prompt_tokens": "many"}, text="fine"))
    error, streamed = await _failure(_client(fake_upstream), _request())

    assert "malformed" in error.message
    assert streamed == "fine"


async def test_a_dropped_connection_raises_after_the_text_before_it(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="one two three", drop_after=1))
    error, streamed = await _failure(_client(fake_upstream), _request())

    assert streamed == "one "
    assert error.code == "connection"
    assert len(fake_upstream.completions()) == 1


async def test_a_stream_closed_cleanly_before_it_finished_is_an_error(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="one two three", end_after=2))
    error, streamed = await _failure(_client(fake_upstream), _request())

    assert "closed before the answer was complete" in error.message
    assert streamed == "one two "


async def test_a_finish_reason_without_done_is_a_complete_answer(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="whole", send_done=False))
    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "whole"
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason == "stop"


async def test_nothing_is_retried_once_a_token_was_yielded(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        "vendor/model", ModelScript(text="a b c", error_mid_stream_after=1, error_message="server hiccup")
    )
    error, _ = await _failure(_client(fake_upstream, max_retries=5), _request())

    assert error.retryable  # a server error could go away, but the caller has already shown "a "
    assert len(fake_upstream.completions()) == 1


async def test_an_error_chunk_before_any_token_is_retried(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        "vendor/model",
        [ModelScript(text="x", error_mid_stream_after=0), ModelScript(text="second try")],
    )
    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "second try"
    assert len(fake_upstream.completions()) == 2


async def test_a_refused_connection_is_retried_then_reported(fake_upstream: FakeUpstream) -> None:
    client = OpenAICompatClient(base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_base=0.01)
    error, _ = await _failure(client, _request())

    assert error.code == "connection" and error.retryable


async def test_a_non_streaming_json_reply_is_understood(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("vendor/model", ModelScript(text="whole answer", cost=0.5, ignore_stream=True))
    chunks = await _collect(_client(fake_upstream), _request())

    assert _text(chunks) == "whole answer"
    assert any(isinstance(c, UsageReport) and c.usage.cost == 0.5 for c in chunks)
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason == "stop"


def test_structured_output_support_comes_from_catalog_info_or_a_callable() -> None:
    info = {
        "a/json": ModelInfo(id="a/json", name="A", supported_parameters=["response_format"]),
        "a/plain": ModelInfo(id="a/plain", name="B", supported_parameters=["temperature"]),
    }
    from_catalog = OpenAICompatClient(base_url="http://x/v1", structured_output=info)
    assert from_catalog.supports_structured_output("a/json")
    assert not from_catalog.supports_structured_output("a/plain")
    assert not from_catalog.supports_structured_output("a/unknown")
    assert OpenAICompatClient(
        base_url="http://x/v1", structured_output=lambda m: m == "b/x"
    ).supports_structured_output("b/x")
    assert not OpenAICompatClient(base_url="http://x/v1").supports_structured_output("a/json")
