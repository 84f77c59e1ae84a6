"""One model call, streamed: the figures it leaves behind (text, usage, timings) and how its cost is known."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from apps.fusion.schemas import SeatToolCall, SeatToolResult, Source, Timings
from apps.providers.base import (
    CitationDelta,
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
    # Pages the answer cites (a server-side web tool's ``url_citation`` annotations), one per URL, in the
    # order they first arrived: the seat's sources, as our own tools' results are.
    cited: dict[str, Source] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def timings(self) -> Timings:
        end = self.ended if self.ended is not None else time.perf_counter()
        ttft = None if self.first_token_at is None else (self.first_token_at - self.started) * 1000
        return Timings(ttft_ms=ttft, duration_ms=(end - self.started) * 1000)


@dataclass(frozen=True, slots=True)
class Piece:
    """A piece of streamed output: answer text or reasoning, at ``offset`` (code points) in its own text;
    or ``sources``: pages the answer newly cites (``text`` empty, ``offset`` the number cited before)."""

    kind: Literal["text", "reasoning", "sources"]
    text: str
    offset: int
    sources: tuple[Source, ...] = ()


async def call_stream(
    *, client: ModelClient, request: CompletionRequest, progress: CallProgress
) -> AsyncGenerator[Piece, None]:
    """Stream ``request``, recording it in ``progress`` and yielding each piece of text as it arrives.

    The one place a model call's stream is read, for the engine and the API alike: text and reasoning are
    yielded, each with its offset, counted here and nowhere else (a progress reused for a seat's next call
    counts on, so a seat's text and reasoning stay contiguous across its tool rounds); citations are
    yielded as ``sources`` pieces, each page once per progress; usage, tool calls (assembled by index), the
    finish reason and the cited pages are kept in ``progress``.
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
                elif isinstance(chunk, CitationDelta):
                    before = len(progress.cited)
                    new = [
                        progress.cited.setdefault(cited.url, Source(url=cited.url, title=cited.title))
                        for cited in chunk.citations
                        if cited.url not in progress.cited
                    ]
                    if new:
                        yield Piece("sources", "", before, tuple(new))
                elif isinstance(chunk, Finish):
                    progress.finish_reason = chunk.reason
        finally:
            progress.ended = time.perf_counter()


@dataclass
class CitedReport:
    """The column's line for what a server-side web tool (OpenRouter's ``openrouter:web_search``) did in
    one call of a seat: a ``seat.tool_call`` when the first citations arrive, then a ``seat.tool_result`` per
    batch of newly cited pages (its sources) and, at the end, one with the searches the usage counted.

    The provider runs the tool itself and says nothing while it does, so the line appears with its first
    result rather than before it; the recorder and the API take these events as they take our own tools'.
    """

    seat: int
    round: int
    tools: list[dict[str, Any]] | None
    # Pages the seat's progress had cited before this call (progress is shared across a seat's calls).
    before: int
    shown: bool = False

    @property
    def call_id(self) -> str:
        return f"server_{self.seat}_{self.round}"

    @property
    def name(self) -> str:
        """The server tool offered (``openrouter:web_search``), else ``citations`` (a model citing
        on its own)."""
        server = [str(tool.get("type")) for tool in self.tools or [] if tool.get("type") != "function"]
        return server[0] if server else "citations"

    def events(
        self, progress: CallProgress, new: Sequence[Source], *, ended: bool = False
    ) -> list[SeatToolCall | SeatToolResult]:
        pages = len(progress.cited) - self.before
        usage = progress.usage if ended else None
        searches = usage.web_search_requests if usage is not None else 0
        reads = usage.web_fetch_requests if usage is not None else 0
        if not new and not searches and not reads:
            return []
        out: list[SeatToolCall | SeatToolResult] = []
        if not self.shown:
            self.shown = True
            out.append(SeatToolCall(seat=self.seat, call_id=self.call_id, name=self.name, detail=""))
        detail = cited_detail(pages=pages, searches=searches, reads=reads)
        out.append(
            SeatToolResult(
                seat=self.seat,
                call_id=self.call_id,
                name=self.name,
                ok=True,
                detail=detail,
                sources=list(new),
            )
        )
        return out


def cited_detail(*, pages: int, searches: int = 0, reads: int = 0) -> str:
    """ "2 searches, 5 pages cited": what a server-side tool did, in words."""
    parts = [f"{searches} search{'es' if searches != 1 else ''}"] if searches else []
    parts += [f"{reads} page{'s' if reads != 1 else ''} read"] if reads else []
    parts.append(f"{pages} page{'s' if pages != 1 else ''} cited")
    return ", ".join(parts)


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
