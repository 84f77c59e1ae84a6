"""One model call, streamed: the figures it leaves behind (text, usage, timings) and how its cost is known."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from apps.fusion.schemas import Timings
from apps.providers.base import (
    CompletionRequest,
    Finish,
    ModelClient,
    ModelGateway,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)


@dataclass
class CallProgress:
    """What one call has produced so far; readable at any moment, also after the call was cancelled."""

    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    ended: float | None = None
    parts: list[str] = field(default_factory=list)
    length: int = 0
    usage: Usage | None = None
    # Tool calls assembled from their deltas, by index: {"id", "name", "arguments"} (ids may be empty).
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def timings(self) -> Timings:
        end = self.ended if self.ended is not None else time.perf_counter()
        ttft = None if self.first_token_at is None else (self.first_token_at - self.started) * 1000
        return Timings(ttft_ms=ttft, duration_ms=(end - self.started) * 1000)


@dataclass(frozen=True)
class Piece:
    """A piece of streamed output: answer text at ``offset``, or reasoning (``offset`` None)."""

    text: str
    offset: int | None


async def call_stream(
    *, client: ModelClient, request: CompletionRequest, progress: CallProgress
) -> AsyncGenerator[Piece, None]:
    """Stream ``request``, recording it in ``progress`` and yielding each piece of text as it arrives.

    The one place a model call's stream is read, for the engine and the API alike: text and reasoning are
    yielded; usage, tool calls (assembled by index) and the finish reason are kept in ``progress``.
    Raises the client's ``ProviderError``. The client's stream is always closed (its connection
    released) when this generator ends, fails, is closed or is cancelled; callers that may stop early
    wrap it in ``contextlib.aclosing``.
    """
    parts = progress.parts
    async with contextlib.aclosing(client.stream(request)) as stream:
        try:
            async for chunk in stream:
                # Text first: it is nearly every chunk of a stream.
                if isinstance(chunk, TextDelta):
                    text = chunk.text
                    if not text:
                        continue
                    if progress.first_token_at is None:
                        progress.first_token_at = time.perf_counter()
                    offset = progress.length
                    parts.append(text)
                    progress.length = offset + len(text)
                    yield Piece(text=text, offset=offset)
                elif isinstance(chunk, ReasoningDelta):
                    if chunk.text:
                        if progress.first_token_at is None:
                            progress.first_token_at = time.perf_counter()
                        yield Piece(text=chunk.text, offset=None)
                elif isinstance(chunk, UsageReport):
                    progress.usage = chunk.usage
                elif isinstance(chunk, ToolCallDelta):
                    call = progress.tool_calls.setdefault(
                        chunk.index, {"id": "", "name": "", "arguments": ""}
                    )
                    call["id"] = chunk.id or call["id"]
                    call["name"] = chunk.name or call["name"]
                    call["arguments"] += chunk.arguments
                elif isinstance(chunk, Finish):
                    progress.finish_reason = chunk.reason
        finally:
            progress.ended = time.perf_counter()


async def call_collect(*, client: ModelClient, request: CompletionRequest, progress: CallProgress) -> str:
    """Run a call to the end without streaming it anywhere; its text."""
    async with contextlib.aclosing(call_stream(client=client, request=request, progress=progress)) as pieces:
        async for _ in pieces:
            pass
    return progress.text


def usage_priced(
    *, gateway: ModelGateway, model: str, progress: CallProgress, cancelled: bool = False
) -> Usage:
    """The call's usage with its cost, or cost None where it cannot honestly be known.

    With a usage report the gateway prices it. Without one: the demo models cost nothing and a request
    that failed before producing anything is not billed; a call cut off after producing text, or
    cancelled while the model may have been working, has an unknown cost rather than an invented one.
    """
    if progress.usage is not None:
        usage = progress.usage
        return usage.model_copy(update={"cost": gateway.cost_of(model, usage)})
    if gateway.is_demo(model):
        return Usage(cost=0.0)
    if cancelled or progress.length:
        return Usage(cost=None)
    return Usage(cost=0.0)
