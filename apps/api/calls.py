"""The pieces every API method is made of: the output events, the caller's messages as our providers take
them, one streamed model call, and provider failures as API errors.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.api.errors import ApiError
from apps.api.schemas import FunctionCallOut, FusionResult, Message, ToolCallOut, UsageOut
from apps.fusion.calls import CallProgress, call_stream
from apps.fusion.schemas import FusionEvent, PriorTurn
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    ModelGateway,
    ProviderError,
    UnknownModelError,
    Usage,
)

# --- output events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextOut:
    text: str


@dataclass(frozen=True)
class ToolCallsOut:
    calls: list[ToolCallOut]


@dataclass(frozen=True)
class ProgressOut:
    """What a fusion run is doing: ``payload`` as chat completions reports it, ``event`` the engine's own
    (the Responses API words it differently and needs what the payload leaves out, a seat's whole text)."""

    payload: dict[str, Any]
    event: FusionEvent | None = None


@dataclass(frozen=True)
class FusionOut:
    """The fusion call is over (panel and analysis): its result, before the answer that follows from it."""

    result: FusionResult


@dataclass(frozen=True)
class FinishOut:
    reason: str
    usage: Usage
    fusion: FusionResult | None = None


ApiEvent = TextOut | ToolCallsOut | ProgressOut | FusionOut | FinishOut


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        cost=usage.cost,
        prompt_tokens_details={"cached_tokens": usage.cached_tokens},
        completion_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
    )


def completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


# --- messages --------------------------------------------------------------------------------------------


def provider_messages(messages: list[Message]) -> list[ChatMessage]:
    """The caller's messages as our providers take them (``developer`` is a system message to them)."""
    converted = []
    for message in messages:
        converted.append(
            ChatMessage(
                role="system" if message.role == "developer" else message.role,
                content=message.text if message.content is not None else None,
                name=message.name,
                tool_calls=[call.model_dump() for call in message.tool_calls] if message.tool_calls else None,
                tool_call_id=message.tool_call_id,
            )
        )
    return converted


def last_user_index(messages: list[Message]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def conversation_parts(messages: list[Message]) -> tuple[str, list[PriorTurn], str]:
    """``(prompt, history, system)`` of a conversation for the panel: the last user message is the prompt;
    earlier user messages paired with the assistant's text answers are the history; system and developer
    messages, joined, are the system text.
    """
    last = last_user_index(messages)
    if last is None:
        raise ApiError(400, "The conversation has no user message.", param="messages")
    system = "\n\n".join(m.text for m in messages if m.role in ("system", "developer") and m.text)
    history: list[PriorTurn] = []
    asked: list[str] = []
    for message in messages[:last]:
        if message.role == "user":
            asked.append(message.text)
        elif message.role == "assistant" and message.text and asked:
            history.append(PriorTurn(prompt="\n\n".join(asked), answer=message.text))
            asked = []
    prompt = "\n\n".join([*asked, messages[last].text]).strip()
    return prompt, history, system


# --- model calls -----------------------------------------------------------------------------------------


@dataclass
class CallResult:
    """One API model call: ``progress`` (text, usage, timings, tool calls, finish reason) as it streams."""

    progress: CallProgress = field(default_factory=CallProgress)

    @property
    def tool_calls(self) -> dict[int, dict[str, str]]:
        return self.progress.tool_calls

    @property
    def finish_reason(self) -> str | None:
        return self.progress.finish_reason

    def calls(self) -> list[ToolCallOut]:
        return [
            ToolCallOut(
                index=position,
                id=call["id"] or f"call_{secrets.token_hex(8)}",
                function=FunctionCallOut(name=call["name"], arguments=call["arguments"]),
            )
            for position, (_, call) in enumerate(sorted(self.tool_calls.items()))
        ]


async def model_call(
    *, gateway: ModelGateway, request: CompletionRequest, result: CallResult
) -> AsyncIterator[str]:
    """Stream one model call (``call_stream``, as the engine does): yield its answer text; its tool calls,
    usage and finish reason end up in ``result``. Reasoning is not part of the answer and is not yielded.

    Raises ``ApiError`` for a provider failure.
    """
    try:
        client = gateway.client_for(request.model)
        pieces = call_stream(client=client, request=request, progress=result.progress)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                if piece.kind == "text":
                    yield piece.text
    except ProviderError as error:
        raise provider_api_error(error) from None


def provider_api_error(error: ProviderError) -> ApiError:
    """A provider's failure as the API reports it: the caller's mistakes keep their status, the rest 502."""
    status = error.status_code
    if isinstance(error, UnknownModelError) or error.reason == "invalid_model":
        return ApiError(
            404, error.message, code="model_not_found", param="model", failure_reason="invalid_model"
        )
    if status == 404:
        return ApiError(404, error.message, code="model_not_found", param="model")
    if error.reason == "insufficient_credits":
        return ApiError(
            402,
            f"The model provider has no credits left: {error.message}",
            code="insufficient_credits",
            failure_reason="insufficient_credits",
        )
    if status == 400:
        return ApiError(400, f"The model refused the request: {error.message}", code="upstream_bad_request")
    if status == 429:
        retry = None if error.retry_after is None else max(1, round(error.retry_after))
        return ApiError(
            429,
            f"The model provider is rate limiting: {error.message}",
            code="rate_limited",
            failure_reason="rate_limited",
            retry_after=retry,
        )
    detail = f" ({status})" if status else ""
    return ApiError(
        502,
        f"The model provider failed{detail}: {error.message}",
        code="upstream_error",
        failure_reason="upstream_error",
    )
