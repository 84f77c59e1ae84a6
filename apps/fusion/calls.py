"""One model call, streamed: the figures it leaves behind (text, usage, timings) and how its cost is known."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal

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
    """What one call has produced so far; readable at any moment, also after the call was cancelled.

    The answer's text is kept here and nowhere else below the recorder: the provider client keeps none, and
    a failed call's partial text is this one. Of the reasoning only its length is kept (the offset of the
    next piece): the engine never sends reasoning on to the judge or the writer.
    """

    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    ended: float | None = None
    parts: list[str] = field(default_factory=list)
    length: int = 0
    reasoning_length: int = 0
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


@dataclass(frozen=True, slots=True)
class Piece:
    """A piece of streamed output: answer text or reasoning, at ``offset`` (code points) in its own text."""

    kind: Literal["text", "reasoning"]
    text: str
    offset: int


async def call_stream(
    *, client: ModelClient, request: CompletionRequest, progress: CallProgress
) -> AsyncGenerator[Piece, None]:
    """Stream ``request``, recording it in ``progress`` and yielding each piece of text as it arrives.

    The one place a model call's stream is read, for the engine and the API alike: text and reasoning are
    yielded, each with its offset, counted here and nowhere else (a progress reused for a seat's next call
    counts on, so a seat's text and reasoning stay contiguous across its tool rounds); usage, tool calls
    (assembled by index) and the finish reason are kept in ``progress``.
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
                    yield Piece("text", text, offset)
                elif isinstance(chunk, ReasoningDelta):
                    text = chunk.text
                    if text:
                        if progress.first_token_at is None:
                            progress.first_token_at = time.perf_counter()
                        offset = progress.reasoning_length
                        progress.reasoning_length = offset + len(text)
                        yield Piece("reasoning", text, offset)
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

    With a usage report the gateway prices it; without one, ``unreported_cost`` says what it cost.
    """
    if progress.usage is not None:
        usage = progress.usage
        return usage.model_copy(update={"cost": gateway.cost_of(model, usage)})
    produced = bool(progress.length)
    return Usage(cost=unreported_cost(gateway=gateway, model=model, produced=produced, cancelled=cancelled))


def unreported_cost(
    *, gateway: ModelGateway, model: str, produced: bool = False, cancelled: bool = False
) -> float | None:
    """What a call that sent no usage report cost: the one rule for calls cut off, failed or cancelled.

    The demo models cost nothing and a request that failed before producing anything is not billed; a
    call cut off after producing text, or cancelled while the model may have been working, has an unknown
    cost (None) rather than an invented one.
    """
    if gateway.is_demo(model):
        return 0.0
    return None if cancelled or produced else 0.0
