"""OpenAI's chat-completions wire format as OpenRouter and compatible servers send it, as pydantic models.

Every field is optional or defaulted and unknown fields are ignored, because servers differ (OpenRouter's
``reasoning``, vLLM's ``reasoning_content``, usage in the last chunk or in a chunk of its own).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from apps.providers.base import (
    ProviderError,
    ReasoningDelta,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    Usage,
    text_storable,
)


def status_retryable(status: int) -> bool:
    """408, 429 and every 5xx may go away on their own; 400/401/402/403/404 will not."""
    return status in {408, 425, 429} or status >= 500


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WireFunction(_Wire):
    name: str | None = None
    arguments: str | None = None


class WireToolCall(_Wire):
    index: int = 0
    id: str | None = None
    function: WireFunction | None = None


class WireDelta(_Wire):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[WireToolCall] | None = None


class WireMessage(WireDelta):
    """A whole message, from a non-streaming reply."""


class WireChoice(_Wire):
    index: int = 0
    delta: WireDelta | None = None
    message: WireMessage | None = None
    finish_reason: str | None = None


class WireCompletionDetails(_Wire):
    reasoning_tokens: int | None = None


class WirePromptDetails(_Wire):
    cached_tokens: int | None = None


class WireUsage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    completion_tokens_details: WireCompletionDetails | None = None
    prompt_tokens_details: WirePromptDetails | None = None

    def to_usage(self) -> Usage:
        prompt = self.prompt_tokens or 0
        completion = self.completion_tokens or 0
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=self.total_tokens if self.total_tokens is not None else prompt + completion,
            reasoning_tokens=(
                self.completion_tokens_details and self.completion_tokens_details.reasoning_tokens
            )
            or 0,
            cached_tokens=(self.prompt_tokens_details and self.prompt_tokens_details.cached_tokens) or 0,
            cost=self.cost,
        )


class WireError(_Wire):
    code: int | str | None = None
    message: str = "unknown error"
    metadata: dict[str, Any] | None = None


class WireChunk(_Wire):
    """One streamed chunk, or a whole non-streaming completion (``choices[].message``)."""

    id: str | None = None
    model: str | None = None
    choices: list[WireChoice] = []
    usage: WireUsage | None = None
    error: WireError | None = None


class WireErrorBody(_Wire):
    error: WireError


def chunk_deltas(choice: WireChoice) -> list[StreamChunk]:
    """The text, reasoning and tool-call pieces one choice carries, in that order."""
    delta = choice.delta or choice.message
    if delta is None:
        return []
    out: list[StreamChunk] = []
    reasoning = delta.reasoning or delta.reasoning_content
    if reasoning:
        out.append(ReasoningDelta(text=text_storable(reasoning)))
    if delta.content:
        out.append(TextDelta(text=text_storable(delta.content)))
    for call in delta.tool_calls or []:
        function = call.function or WireFunction()
        out.append(
            ToolCallDelta(
                index=call.index, id=call.id, name=function.name, arguments=function.arguments or ""
            )
        )
    return out


def retry_after_seconds(value: str | None, *, cap: float) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)


def error_from_status(
    status: int, body: bytes, *, provider: str, retry_after: float | None, secrets: tuple[str, ...] = ()
) -> ProviderError:
    """The ``ProviderError`` for an HTTP error reply, with the provider's own message when it sent one."""
    message = ""
    code: str | None = None
    try:
        parsed = WireErrorBody.model_validate_json(body)
        message = parsed.error.message
        code = None if parsed.error.code is None else str(parsed.error.code)
    except ValueError:
        message = body[:300].decode("utf-8", "replace").strip()
    return ProviderError(
        redact(f"{provider} returned HTTP {status}: {message or 'no details'}", secrets),
        status_code=status,
        code=code,
        retryable=status_retryable(status),
        retry_after=retry_after,
    )


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Some servers echo the key they were sent in their error message; it must not reach a log or a page."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
