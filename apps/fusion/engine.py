"""The fusion engine: a panel answers concurrently, a judge compares, a writer fuses. No Django."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.fusion.analysis import analysis_run
from apps.fusion.calls import CallProgress, CitedReport, call_stream, usage_priced
from apps.fusion.prompts import PanelAnswerText, judge_messages, panel_messages, writer_messages
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
    FailureReason,
    FinalDelta,
    FinalDone,
    FinalStarted,
    FusionEvent,
    FusionRequest,
    RunDone,
    RunFailed,
    RunStarted,
    SeatDelta,
    SeatDone,
    SeatFailed,
    SeatReasoningDelta,
    SeatSpec,
    SeatStarted,
    SeatToolCall,
    SeatToolResult,
    Source,
    StepStats,
    Totals,
)
from apps.fusion.tools import Toolbox, ToolOutcome
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    ModelGateway,
    ProviderError,
    ProviderFailureReason,
    Usage,
)


@dataclass
class _Seat:
    spec: SeatSpec
    progress: CallProgress = field(default_factory=CallProgress)
    outcome: SeatDone | SeatFailed | None = None
    # The priced usage of the seat's finished calls (a seat that uses tools makes several).
    spent: Usage = field(default_factory=lambda: Usage(cost=0.0))
    sources: list[Source] = field(default_factory=list)
    # Why the seat failed, when the provider's error is one of the brief's reasons (no credits, ...).
    failure: ProviderFailureReason | None = None


def panel_failure_reason(seats: Sequence[_Seat]) -> FailureReason:
    """``all_panels_failed``, unless every seat failed for one and the same provider reason (no credits,
    rate limited, no such model): then that reason, which says what to do about it."""
    reasons = {seat.failure for seat in seats}
    only = reasons.pop() if len(reasons) == 1 else None
    return only or "all_panels_failed"


def totals_build(*, steps: Sequence[StepStats], started: float) -> Totals:
    """Per-step figures and their sum; the summed cost is None once a step's cost is unknown."""
    usage = Usage(cost=0.0)
    for step in steps:
        usage = usage + step.usage
    known = sum(step.usage.cost or 0.0 for step in steps)
    return Totals(
        steps=list(steps),
        usage=usage,
        duration_ms=(time.perf_counter() - started) * 1000,
        known_cost=known,
        estimated=any(step.estimated for step in steps),
    )


async def _tasks_cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def run_fusion(
    request: FusionRequest, *, gateway: ModelGateway, toolbox: Toolbox | None = None
) -> AsyncGenerator[FusionEvent, None]:
    """Run one fusion turn and yield its events as they happen.

    Order: ``run.started``; per seat ``seat.started``, ``seat.delta``* (``seat.reasoning``*), then
    ``seat.done`` or ``seat.failed``, interleaved across seats; ``analysis.started`` then
    ``analysis.done`` or ``analysis.failed`` (the degraded path: the writer works from the raw answers);
    ``final.started``, ``final.delta``*, ``final.done``; ``run.done`` with the totals.
    ``run.failed`` ends a run that cannot go on: ``invalid_model`` (unknown judge or writer; yielded
    alone, before anything runs), ``all_panels_failed`` (no judge or writer call is made; the provider's
    reason instead when every seat failed for the same one: ``insufficient_credits``, ``rate_limited``,
    ``invalid_model``), ``writer_failed`` (with the partial final text; likewise the provider's reason when
    it has one) or ``unexpected_error``.

    With a ``toolbox`` and ``options.web_tools``, seats whose model can call tools are offered its tools:
    between ``seat.delta`` events a seat may yield ``seat.tool_call`` / ``seat.tool_result`` pairs (at most
    ``options.max_tool_calls`` calls; then the model is asked again without tools, so it answers).
    ``seat.done`` carries the seat's sources; the judge and the writer see them with the answer.

    ``request.kept`` holds answers already known from an earlier run of the same turn (a retry of its failed
    seats): those seats are not called and yield no seat events; their answers reach the judge and the
    writer with the fresh ones, in seat order, and count towards the quorum (a retry still waits for at
    least one fresh answer). ``run.done``'s totals cover the calls this run made.

    Seats run concurrently, one task each; a seat's failure (including an unknown model, status 404) is
    reported and the others carry on. With ``options.quorum`` the judge starts once that many seats are
    done; with ``options.deadline_s`` it starts when the deadline passes. Seats still running then are
    cancelled and reported ``seat.failed`` with reason ``missing``, keeping their partial text. Deltas
    (``seat.delta``, ``seat.reasoning``, ``final.delta``) carry the offset of their first character in their
    own text, counted here once: each seat's answer, each seat's reasoning and the final text are
    contiguous, and whoever records them trusts these offsets.

    Closing the iterator (``aclose``) or cancelling the task iterating it cancels and awaits every
    request in flight: nothing outlives the iteration. The engine does not yield ``run.failed`` for that
    (a closed iterator cannot yield); whoever cancelled records it.
    """
    started = time.perf_counter()
    for role, model in (("judge", request.judge), ("writer", request.writer)):
        try:
            gateway.client_for(model)
        except ProviderError as error:
            yield RunFailed(reason="invalid_model", message=f"Unknown {role} model {model}: {error.message}")
            return
    yield RunStarted(seats=request.seats, judge=request.judge, writer=request.writer)
    steps: list[StepStats] = []
    try:
        seats: list[_Seat] = []
        # Inner generators are closed explicitly: closing this one must reach their ``finally`` now.
        async with contextlib.aclosing(
            _panel_run(request=request, gateway=gateway, toolbox=toolbox, seats=seats)
        ) as panel:
            async for event in panel:
                yield event
        steps.extend(_seat_step(seat) for seat in seats)
        answers = [
            PanelAnswerText(
                seat=seat.spec.seat,
                model=seat.spec.model,
                content=seat.outcome.content,
                sources=tuple(seat.outcome.sources),
            )
            for seat in seats
            if isinstance(seat.outcome, SeatDone)
        ]
        # Kept answers (a retry of a turn's failed seats) join the fresh ones, in seat order.
        answers += [
            PanelAnswerText(
                seat=kept.seat, model=kept.model, content=kept.content, sources=tuple(kept.sources)
            )
            for kept in request.kept
        ]
        answers.sort(key=lambda answer: answer.seat)
        missing = [seat.spec.model for seat in seats if not isinstance(seat.outcome, SeatDone)]
        if not answers:
            failures = "; ".join(
                f"seat {seat.spec.seat} {seat.spec.model}: {seat.outcome.error}"
                for seat in seats
                if isinstance(seat.outcome, SeatFailed)
            )
            yield RunFailed(
                reason=panel_failure_reason(seats),
                message=f"All panel models failed ({failures})",
                totals=totals_build(steps=steps, started=started),
            )
            return

        yield AnalysisStarted(model=request.judge)
        judged = await analysis_run(
            gateway=gateway,
            judge=request.judge,
            messages=judge_messages(
                prompt=request.prompt, history=request.history, answers=answers, missing=missing
            ),
            max_tokens=request.options.max_completion_tokens,
        )
        steps.append(
            StepStats(
                role="judge",
                model=request.judge,
                status="done" if isinstance(judged, AnalysisDone) else "failed",
                usage=judged.usage,
                timings=judged.timings,
            )
        )
        yield judged

        messages = writer_messages(
            prompt=request.prompt,
            history=request.history,
            answers=answers,
            analysis=judged.analysis if isinstance(judged, AnalysisDone) else None,
            degraded_reason=(
                f"{judged.reason}: {judged.detail}" if isinstance(judged, AnalysisFailed) else None
            ),
            missing=missing,
        )
        yield FinalStarted(model=request.writer)
        writer = _writer_run(request=request, gateway=gateway, messages=messages, steps=steps)
        async with contextlib.aclosing(writer) as final:
            async for event in final:
                if isinstance(event, RunFailed):
                    event.totals = totals_build(steps=steps, started=started)
                    yield event
                    return
                yield event
        yield RunDone(totals=totals_build(steps=steps, started=started))
    except Exception as error:  # a defect of ours or a client's: still end the stream with a terminal event
        yield RunFailed(
            reason="unexpected_error",
            message=f"Unexpected error: {type(error).__name__}: {error}",
            totals=totals_build(steps=steps, started=started),
        )


async def _panel_run(
    *, request: FusionRequest, gateway: ModelGateway, toolbox: Toolbox | None, seats: list[_Seat]
) -> AsyncGenerator[FusionEvent, None]:
    """Run every seat concurrently and yield their events; fill ``seats`` with each seat's outcome."""
    options = request.options
    queue: asyncio.Queue[FusionEvent] = asyncio.Queue()
    seats.extend(_Seat(spec=spec) for spec in request.seats_to_run)
    started = time.perf_counter()
    deadline = None if options.deadline_s is None else started + options.deadline_s
    # Kept answers count towards the quorum (the number of answers the judge waits for), but a run with
    # seats to retry waits for at least one of them: it was started for them.
    quorum = max(1, (options.quorum or len(request.seats)) - len(request.kept))
    tasks = [
        asyncio.create_task(
            _seat_run(seat=seat, request=request, gateway=gateway, toolbox=toolbox, queue=queue)
        )
        for seat in seats
    ]
    try:
        finished = done = 0
        cut_short = ""
        while finished < len(seats):
            if done >= quorum:
                cut_short = f"not needed: the judge started once {quorum} seats were done"
                break
            if not queue.empty():
                # Most events are taken here: a timer per delta cost more than the rest of this loop.
                event = queue.get_nowait()
            elif deadline is None:
                event = await queue.get()
            else:
                try:
                    async with asyncio.timeout(deadline - time.perf_counter()):
                        event = await queue.get()
                except TimeoutError:
                    cut_short = f"did not finish within the {options.deadline_s:g} s deadline"
                    break
            if isinstance(event, SeatDone | SeatFailed):
                finished += 1
                done += isinstance(event, SeatDone)
            yield event
        if cut_short:
            await _tasks_cancel(tasks)
            # Whatever the cancelled seats streamed before stopping is already queued: deliver it first,
            # so the partial text reported below matches the deltas exactly.
            while not queue.empty():
                yield queue.get_nowait()
            for seat in seats:
                if seat.outcome is None:
                    seat.outcome = _seat_missing(seat=seat, gateway=gateway, error=cut_short)
                    yield seat.outcome
    finally:
        await _tasks_cancel(tasks)


def _seat_missing(*, seat: _Seat, gateway: ModelGateway, error: str) -> SeatFailed:
    progress = seat.progress
    return SeatFailed(
        seat=seat.spec.seat,
        model=seat.spec.model,
        reason="missing",
        error=error,
        partial_text=progress.text,
        usage=seat.spent
        + usage_priced(gateway=gateway, model=seat.spec.model, progress=progress, cancelled=True),
        timings=progress.timings(),
        sources=sources_unique(seat.sources),
    )


async def _seat_run(
    *,
    seat: _Seat,
    request: FusionRequest,
    gateway: ModelGateway,
    toolbox: Toolbox | None,
    queue: asyncio.Queue[FusionEvent],
) -> None:
    spec = seat.spec
    progress = seat.progress
    queue.put_nowait(SeatStarted(seat=spec.seat, model=spec.model))
    try:
        client = gateway.client_for(spec.model)
        messages = panel_messages(
            prompt=request.prompt, history=request.history, system_prompt=spec.system_prompt
        )
        offered = toolbox is not None and request.options.web_tools and gateway.supports_tools(spec.model)
        calls_left = request.options.max_tool_calls if offered else 0
        rounds = 0
        while True:
            # Once the budget is spent the model gets no tools, so its next reply is the answer.
            tools = None
            if toolbox is not None and calls_left > 0:
                tools = toolbox.definitions(spec.model, max_calls=calls_left) or None
            # Pages a server-side tool (OpenRouter's web search) found come back as citations during the
            # call: shown as one tool line per call, its sources the seat's like our own tools' results.
            cited = CitedReport(seat=spec.seat, round=rounds, tools=tools, before=len(progress.cited))
            rounds += 1
            completion = CompletionRequest(
                model=spec.model,
                messages=messages,
                temperature=spec.temperature if spec.temperature is not None else request.options.temperature,
                max_tokens=request.options.max_completion_tokens,
                tools=tools,
            )
            parts_before = len(progress.parts)
            progress.usage, progress.tool_calls, progress.finish_reason = None, {}, None
            async with contextlib.aclosing(
                call_stream(client=client, request=completion, progress=progress)
            ) as pieces:
                async for piece in pieces:
                    if piece.kind == "text":
                        queue.put_nowait(SeatDelta(seat=spec.seat, text=piece.text, offset=piece.offset))
                    elif piece.kind == "reasoning":
                        queue.put_nowait(
                            SeatReasoningDelta(seat=spec.seat, text=piece.text, offset=piece.offset)
                        )
                    else:
                        seat.sources.extend(piece.sources)
                        for event in cited.events(progress, piece.sources):
                            queue.put_nowait(event)
            for event in cited.events(progress, (), ended=True):
                queue.put_nowait(event)
            seat.spent = seat.spent + usage_priced(gateway=gateway, model=spec.model, progress=progress)
            progress.usage = None  # counted: a cancel during the tool calls must not count it again
            # Only function tools are ours to run: a server-side tool (``openrouter:*``) ran during the call.
            ours = any(tool.get("type") == "function" for tool in tools or [])
            if tools is None or toolbox is None or not progress.tool_calls or not ours:
                break
            used = request.options.max_tool_calls - calls_left
            calls = _tool_calls_take(progress, seat=spec.seat, limit=calls_left, first=used)
            calls_left -= len(calls)
            said = "".join(progress.parts[parts_before:])
            messages = [
                *messages,
                ChatMessage(
                    role="assistant", content=said or None, tool_calls=[call.wire() for call in calls]
                ),
            ]
            outcomes = await _tools_run(toolbox, calls, seat=spec.seat, queue=queue)
            for call, outcome in zip(calls, outcomes, strict=True):
                seat.sources.extend(outcome.sources)
                messages.append(ChatMessage(role="tool", tool_call_id=call.id, content=outcome.content))
            if progress.parts and not progress.parts[-1].endswith("\n"):
                # What the model said before calling a tool and what it says after are two paragraphs.
                queue.put_nowait(SeatDelta(seat=spec.seat, text="\n\n", offset=progress.length))
                progress.parts.append("\n\n")
                progress.length += 2
    except Exception as error:  # any failure of one seat is that seat's alone
        seat.failure = error.reason if isinstance(error, ProviderError) else None
        status_code = error.status_code if isinstance(error, ProviderError) else None
        message = error.message if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
        seat.outcome = SeatFailed(
            seat=spec.seat,
            model=spec.model,
            reason="error",
            error=message,
            status_code=status_code,
            partial_text=progress.text,
            usage=seat.spent + usage_priced(gateway=gateway, model=spec.model, progress=progress),
            timings=progress.timings(),
            sources=sources_unique(seat.sources),
        )
    else:
        seat.outcome = SeatDone(
            seat=spec.seat,
            model=spec.model,
            content=progress.text,
            usage=seat.spent,
            timings=progress.timings(),
            sources=sources_unique(seat.sources),
        )
    queue.put_nowait(seat.outcome)


@dataclass(frozen=True)
class _ToolCall:
    id: str  # the model's id for the call, on the wire
    # Ours, unique within the seat for its events: models may reuse ids from one reply to the next.
    key: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _tool_calls_take(progress: CallProgress, *, seat: int, limit: int, first: int) -> list[_ToolCall]:
    """The calls of the reply just streamed, at most ``limit``; calls without an id get one of ours."""
    calls = []
    for position, (_index, raw) in enumerate(sorted(progress.tool_calls.items())[:limit]):
        key = f"call_{seat}_{first + position}"
        calls.append(_ToolCall(id=raw["id"] or key, key=key, name=raw["name"], arguments=raw["arguments"]))
    return calls


async def _tools_run(
    toolbox: Toolbox, calls: list[_ToolCall], *, seat: int, queue: asyncio.Queue[FusionEvent]
) -> list[ToolOutcome]:
    """Run one reply's calls concurrently, announcing each before it runs and after it ends."""

    async def one(call: _ToolCall) -> ToolOutcome:
        detail = toolbox.describe(call.name, call.arguments)
        queue.put_nowait(SeatToolCall(seat=seat, call_id=call.key, name=call.name, detail=detail))
        outcome = await toolbox.run(call.name, call.arguments)
        queue.put_nowait(
            SeatToolResult(
                seat=seat,
                call_id=call.key,
                name=call.name,
                ok=outcome.ok,
                detail=outcome.detail,
                sources=outcome.sources,
            )
        )
        return outcome

    return list(await asyncio.gather(*(one(call) for call in calls)))


def sources_unique(sources: Sequence[Source]) -> list[Source]:
    """Sources in first-seen order, one per URL (the brief de-duplicates by URL across the whole run)."""
    seen: dict[str, Source] = {}
    for source in sources:
        seen.setdefault(source.url, source)
    return list(seen.values())


def _seat_step(seat: _Seat) -> StepStats:
    outcome = seat.outcome
    assert outcome is not None
    status = "done" if isinstance(outcome, SeatDone) else outcome.reason
    return StepStats(
        role="seat",
        seat=seat.spec.seat,
        model=seat.spec.model,
        status="failed" if status == "error" else status,
        usage=outcome.usage,
        timings=outcome.timings,
    )


async def _writer_run(
    *, request: FusionRequest, gateway: ModelGateway, messages: list[ChatMessage], steps: list[StepStats]
) -> AsyncGenerator[FinalDelta | FinalDone | RunFailed, None]:
    """Stream the writer: ``final.delta``* then ``final.done``, or ``run.failed(writer_failed)`` (or the
    provider's reason: ``insufficient_credits``, ``rate_limited``, ``invalid_model``).

    Appends the writer's step to ``steps`` either way.
    """
    progress = CallProgress()
    completion = CompletionRequest(
        model=request.writer, messages=messages, max_tokens=request.options.max_completion_tokens
    )
    problem = ""
    reason: FailureReason = "writer_failed"
    try:
        client = gateway.client_for(request.writer)
        async with contextlib.aclosing(
            call_stream(client=client, request=completion, progress=progress)
        ) as pieces:
            async for piece in pieces:
                if piece.kind == "text":  # a writer's reasoning is not shown
                    yield FinalDelta(text=piece.text, offset=piece.offset)
    except ProviderError as error:
        code = f" ({error.status_code})" if error.status_code else ""
        problem = f"The writer {request.writer} failed{code}: {error.message}"
        reason = error.reason or reason
    if not problem and not progress.text.strip():
        problem = f"The writer {request.writer} returned an empty answer"
    usage = usage_priced(gateway=gateway, model=request.writer, progress=progress)
    steps.append(
        StepStats(
            role="writer",
            model=request.writer,
            status="failed" if problem else "done",
            usage=usage,
            timings=progress.timings(),
        )
    )
    if problem:
        yield RunFailed(reason=reason, message=problem, partial_final=progress.text)
    else:
        yield FinalDone(content=progress.text, usage=usage, timings=progress.timings())
