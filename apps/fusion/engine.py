"""The fusion engine: a panel answers concurrently, a judge compares, a writer fuses. No Django."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

from apps.fusion.analysis import analysis_run
from apps.fusion.calls import CallProgress, call_stream, usage_priced
from apps.fusion.prompts import PanelAnswerText, judge_messages, panel_messages, writer_messages
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
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
    StepStats,
    Totals,
)
from apps.providers.base import ChatMessage, CompletionRequest, ModelGateway, ProviderError, Usage


@dataclass
class _Seat:
    spec: SeatSpec
    progress: CallProgress = field(default_factory=CallProgress)
    outcome: SeatDone | SeatFailed | None = None


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
    )


async def _tasks_cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def run_fusion(request: FusionRequest, *, gateway: ModelGateway) -> AsyncIterator[FusionEvent]:
    """Run one fusion turn and yield its events as they happen.

    Order: ``run.started``; per seat ``seat.started``, ``seat.delta``* (``seat.reasoning``*), then
    ``seat.done`` or ``seat.failed``, interleaved across seats; ``analysis.started`` then
    ``analysis.done`` or ``analysis.failed`` (the degraded path: the writer works from the raw answers);
    ``final.started``, ``final.delta``*, ``final.done``; ``run.done`` with the totals.
    ``run.failed`` ends a run that cannot go on: ``invalid_model`` (unknown judge or writer; yielded
    alone, before anything runs), ``all_panels_failed`` (no judge or writer call is made),
    ``writer_failed`` (with the partial final text) or ``unexpected_error``.

    Seats run concurrently, one task each; a seat's failure (including an unknown model, status 404) is
    reported and the others carry on. With ``options.quorum`` the judge starts once that many seats are
    done; with ``options.deadline_s`` it starts when the deadline passes. Seats still running then are
    cancelled and reported ``seat.failed`` with reason ``missing``, keeping their partial text. Deltas
    carry the offset of their first character, so each seat's and the final text are contiguous.

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
        async with contextlib.aclosing(_panel_run(request=request, gateway=gateway, seats=seats)) as panel:
            async for event in panel:
                yield event
        steps.extend(_seat_step(seat) for seat in seats)
        answers = [
            PanelAnswerText(seat=seat.spec.seat, model=seat.spec.model, content=seat.outcome.content)
            for seat in seats
            if isinstance(seat.outcome, SeatDone)
        ]
        missing = [seat.spec.model for seat in seats if not isinstance(seat.outcome, SeatDone)]
        if not answers:
            failures = "; ".join(
                f"seat {seat.spec.seat} {seat.spec.model}: {seat.outcome.error}"
                for seat in seats
                if isinstance(seat.outcome, SeatFailed)
            )
            yield RunFailed(
                reason="all_panels_failed",
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
    *, request: FusionRequest, gateway: ModelGateway, seats: list[_Seat]
) -> AsyncGenerator[FusionEvent, None]:
    """Run every seat concurrently and yield their events; fill ``seats`` with each seat's outcome."""
    options = request.options
    queue: asyncio.Queue[FusionEvent] = asyncio.Queue()
    seats.extend(_Seat(spec=spec) for spec in request.seats)
    started = time.perf_counter()
    deadline = None if options.deadline_s is None else started + options.deadline_s
    quorum = options.quorum or len(seats)
    tasks = [
        asyncio.create_task(_seat_run(seat=seat, request=request, gateway=gateway, queue=queue))
        for seat in seats
    ]
    try:
        finished = done = 0
        cut_short = ""
        while finished < len(seats):
            if done >= quorum:
                cut_short = f"not needed: the judge started once {quorum} seats were done"
                break
            timeout = None if deadline is None else deadline - time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
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
        usage=usage_priced(gateway=gateway, model=seat.spec.model, progress=progress, cancelled=True),
        timings=progress.timings(),
    )


async def _seat_run(
    *, seat: _Seat, request: FusionRequest, gateway: ModelGateway, queue: asyncio.Queue[FusionEvent]
) -> None:
    spec = seat.spec
    progress = seat.progress
    queue.put_nowait(SeatStarted(seat=spec.seat, model=spec.model))
    try:
        client = gateway.client_for(spec.model)
        completion = CompletionRequest(
            model=spec.model,
            messages=panel_messages(
                prompt=request.prompt, history=request.history, system_prompt=spec.system_prompt
            ),
            temperature=spec.temperature if spec.temperature is not None else request.options.temperature,
            max_tokens=request.options.max_completion_tokens,
        )
        async with contextlib.aclosing(
            call_stream(client=client, request=completion, progress=progress)
        ) as pieces:
            async for piece in pieces:
                if piece.offset is None:
                    queue.put_nowait(SeatReasoningDelta(seat=spec.seat, text=piece.text))
                else:
                    queue.put_nowait(SeatDelta(seat=spec.seat, text=piece.text, offset=piece.offset))
    except Exception as error:  # any failure of one seat is that seat's alone
        status_code = error.status_code if isinstance(error, ProviderError) else None
        message = error.message if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
        seat.outcome = SeatFailed(
            seat=spec.seat,
            model=spec.model,
            reason="error",
            error=message,
            status_code=status_code,
            partial_text=progress.text,
            usage=usage_priced(gateway=gateway, model=spec.model, progress=progress),
            timings=progress.timings(),
        )
    else:
        seat.outcome = SeatDone(
            seat=spec.seat,
            model=spec.model,
            content=progress.text,
            usage=usage_priced(gateway=gateway, model=spec.model, progress=progress),
            timings=progress.timings(),
        )
    queue.put_nowait(seat.outcome)


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
    """Stream the writer: ``final.delta``* then ``final.done``, or ``run.failed(writer_failed)``.

    Appends the writer's step to ``steps`` either way.
    """
    progress = CallProgress()
    completion = CompletionRequest(
        model=request.writer, messages=messages, max_tokens=request.options.max_completion_tokens
    )
    problem = ""
    try:
        client = gateway.client_for(request.writer)
        async with contextlib.aclosing(
            call_stream(client=client, request=completion, progress=progress)
        ) as pieces:
            async for piece in pieces:
                if piece.offset is not None:
                    yield FinalDelta(text=piece.text, offset=piece.offset)
    except ProviderError as error:
        code = f" ({error.status_code})" if error.status_code else ""
        problem = f"The writer {request.writer} failed{code}: {error.message}"
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
        yield RunFailed(reason="writer_failed", message=problem, partial_final=progress.text)
    else:
        yield FinalDone(content=progress.text, usage=usage, timings=progress.timings())
