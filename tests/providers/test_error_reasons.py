"""OpenRouter's errors as the brief's failure reasons, and which of them are worth a retry.

402 is ``insufficient_credits``, 429 ``rate_limited``, an unknown model (OpenRouter's 400 "not a valid model
ID", or a 404) ``invalid_model``; a 503 "No endpoints found" is an answer about routing, so it is not retried.
"""

from __future__ import annotations

import pytest

from apps.providers.base import ChatMessage, CompletionRequest, ProviderError
from apps.providers.openai_compat import OpenAICompatClient
from apps.providers.openai_wire import error_retryable, failure_reason
from tests.fakes.upstream import FakeUpstream, ModelScript

MODEL = "vendor/model"


def _client(upstream: FakeUpstream) -> OpenAICompatClient:
    return OpenAICompatClient(
        base_url=upstream.base_url, api_key="sk-or-v1-test", max_retries=3, backoff_base=0.01
    )


async def _failure(upstream: FakeUpstream) -> ProviderError:
    request = CompletionRequest(model=MODEL, messages=[ChatMessage(role="user", content="Hi")])
    with pytest.raises(ProviderError) as caught:
        async for _ in _client(upstream).stream(request):
            pass
    return caught.value


@pytest.mark.parametrize(
    ("status", "message", "reason", "attempts"),
    [
        (
            402,
            "Insufficient credits. Add more using https://openrouter.ai/credits",
            "insufficient_credits",
            1,
        ),
        (429, "Rate limit exceeded: free-models-per-min", "rate_limited", 4),
        (400, "vendor/model is not a valid model ID", "invalid_model", 1),
        (404, "Model not found", "invalid_model", 1),
        (503, "No endpoints found for vendor/model.", None, 1),
        (503, "Service temporarily unavailable", None, 4),
    ],
)
async def test_an_openrouter_error_carries_its_failure_reason_and_is_retried_only_if_that_can_help(
    fake_upstream: FakeUpstream, status: int, message: str, reason: str | None, attempts: int
) -> None:
    fake_upstream.script(MODEL, ModelScript(error_status=status, error_message=message))

    error = await _failure(fake_upstream)

    assert error.status_code == status and error.reason == reason
    assert len(fake_upstream.completions()) == attempts


async def test_an_error_chunk_before_any_token_carries_the_reason_too(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script(
        MODEL,
        ModelScript(text="x", error_mid_stream_after=0, error_message="No endpoints found for vendor/model."),
    )

    error = await _failure(fake_upstream)

    # OpenRouter's mid-stream errors say "server_error", which is retried, but not when no endpoint serves it.
    assert not error.retryable
    assert len(fake_upstream.completions()) == 1


def test_no_endpoints_is_not_retryable_whatever_its_status_while_other_server_errors_are() -> None:
    assert not error_retryable(503, "No endpoints found that support tool use.")
    assert not error_retryable(404, "No endpoints found matching your data policy")
    assert error_retryable(503, "Provider returned error")
    assert error_retryable(429, "slow down")
    assert failure_reason(404, "No endpoints found that support tool use.") is None
