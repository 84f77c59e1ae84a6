"""In-process fake models for engine tests: scripted chunks, recorded calls, timing controlled by events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from apps.fusion.demo_content import role_reply
from apps.fusion.schemas import FusionEvent, FusionOptions, FusionRequest, PriorTurn, SeatSpec
from apps.providers.base import (
    CompletionRequest,
    Finish,
    ModelClient,
    ReasoningDelta,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    UnknownModelError,
    Usage,
    UsageReport,
)
from apps.providers.demo import DemoClient

PRICE_PER_TOKEN = 1e-6
EventT = TypeVar("EventT")


@dataclass
class Script:
    """How one call of a fake model behaves."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " world"])
    reasoning: list[str] = field(default_factory=list)
    # Wait for this before the first chunk (and, with ``gate_after``, after that many chunks instead).
    gate: asyncio.Event | None = None
    gate_after: int = 0
    # Seconds between chunks.
    delay: float = 0.0
    # Raised after the chunks.
    error: Exception | None = None
    usage: Usage | None = field(default_factory=lambda: Usage(prompt_tokens=10, completion_tokens=5))
    # Tool calls after the chunks, as (name, JSON arguments); the reply then finishes with "tool_calls".
    tool_calls: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Call:
    request: CompletionRequest
    started: float
    ended: float | None = None
    cancelled: bool = False
    closed: bool = False


class FakeClient:
    """A ``ModelClient`` whose models follow scripts (a list per model: one per call, the last repeating)."""

    is_demo = False

    def __init__(self) -> None:
        self.scripts: dict[str, list[Script]] = {}
        self.calls: list[Call] = []
        self.structured: set[str] = set()
        self.active = 0
        self.max_active = 0

    def script(self, model: str, *scripts: Script) -> None:
        self.scripts[model] = list(scripts)

    def text(self, model: str, text: str, **options: object) -> None:
        """A model answering ``text`` word by word."""
        words = [word + " " for word in text.split(" ")]
        words[-1] = words[-1].rstrip(" ")
        self.script(model, Script(chunks=words, **options))  # type: ignore[arg-type]

    def calls_for(self, model: str) -> list[Call]:
        return [call for call in self.calls if call.request.model == model]

    def supports_structured_output(self, model: str) -> bool:
        return model in self.structured

    def _next(self, model: str) -> Script:
        scripts = self.scripts.get(model) or [Script()]
        count = len(self.calls_for(model)) - 1
        return scripts[min(count, len(scripts) - 1)]

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        call = Call(request=request, started=time.perf_counter())
        self.calls.append(call)
        script = self._next(request.model)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            for text in script.reasoning:
                yield ReasoningDelta(text=text)
            for index, text in enumerate(script.chunks):
                if script.gate is not None and index == script.gate_after:
                    await script.gate.wait()
                await asyncio.sleep(script.delay)
                yield TextDelta(text=text)
            if script.gate is not None and script.gate_after >= len(script.chunks):
                await script.gate.wait()
            if script.error is not None:
                raise script.error
            for index, (name, arguments) in enumerate(script.tool_calls):
                half = len(arguments) // 2
                yield ToolCallDelta(index=index, id=f"call-{index}", name=name, arguments=arguments[:half])
                yield ToolCallDelta(index=index, arguments=arguments[half:])
            if script.usage is not None:
                yield UsageReport(usage=script.usage)
            yield Finish(reason="tool_calls" if script.tool_calls else "stop", model=request.model)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        except GeneratorExit:
            call.closed = True
            raise
        finally:
            call.ended = time.perf_counter()
            self.active -= 1


class FakeGateway:
    """Routes every model to one client; ``unknown`` models raise ``UnknownModelError``."""

    def __init__(self, client: ModelClient, *, unknown: set[str] | None = None, demo: bool = False) -> None:
        self.client = client
        self.unknown = unknown or set()
        self.demo = demo

    def client_for(self, model: str) -> ModelClient:
        if model in self.unknown:
            raise UnknownModelError(model, f"No provider serves {model}")
        return self.client

    def cost_of(self, model: str, usage: Usage) -> float | None:
        if usage.cost is not None:
            return usage.cost
        return (usage.prompt_tokens + usage.completion_tokens) * PRICE_PER_TOKEN

    def is_demo(self, model: str) -> bool:
        return self.demo

    def supports_tools(self, model: str) -> bool:
        return not self.demo


def fusion_request(
    *,
    seats: list[str] | None = None,
    prompt: str = "Which is better for a small team, PostgreSQL or MySQL?",
    judge: str = "fake/judge",
    writer: str = "fake/writer",
    history: list[PriorTurn] | None = None,
    **options: object,
) -> FusionRequest:
    models = seats or ["fake/a", "fake/b", "fake/c"]
    return FusionRequest(
        prompt=prompt,
        history=history or [],
        seats=[SeatSpec(seat=index, model=model) for index, model in enumerate(models, start=1)],
        judge=judge,
        writer=writer,
        options=FusionOptions.model_validate(options),
    )


VALID_ANALYSIS = (
    '{"consensus": ["Both work"], "contradictions": [], "partial_coverage": [], '
    '"unique_insights": [{"model": "fake/a", "insight": "Backups"}], "blind_spots": ["Cost"]}'
)


async def events_collect(stream: AsyncIterator[FusionEvent]) -> list[FusionEvent]:
    return [event async for event in stream]


def of_type(events: list[FusionEvent], kind: type[EventT]) -> list[EventT]:
    return [event for event in events if isinstance(event, kind)]


@pytest.fixture
def fake() -> FakeClient:
    """A fake client whose judge returns a valid analysis by default."""
    client = FakeClient()
    client.script("fake/judge", Script(chunks=[VALID_ANALYSIS]))
    client.text("fake/writer", "The fused answer.")
    return client


@pytest.fixture
def gateway(fake: FakeClient) -> FakeGateway:
    return FakeGateway(fake)


@pytest.fixture
def demo_gateway() -> FakeGateway:
    return FakeGateway(DemoClient(delay=0, role_reply=role_reply), demo=True)
