"""The fusion model slug: the whole pipeline, recorded as a turn of the caller's, the writer's answer as
the completion. ``FusionFold`` turns engine events into the brief's result object, also for the server tool.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from channels.db import database_sync_to_async

from apps.api.calls import ApiEvent, FinishOut, FusionOut, ProgressOut, TextOut, conversation_parts
from apps.api.errors import ApiError
from apps.api.schemas import FailedModel, FusionResult, PanelResponse, Source
from apps.chat.recorder import TurnRecorder
from apps.chat.services import ChatError, conversation_create, fusion_request_for, turn_create
from apps.fusion.engine import run_fusion, sources_unique, totals_build
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
    FinalDelta,
    FusionEvent,
    FusionRequest,
    PriorTurn,
    RunDone,
    RunFailed,
    RunStarted,
    SeatDelta,
    SeatDone,
    SeatFailed,
    SeatReasoningDelta,
    SeatStarted,
    SeatToolCall,
    SeatToolResult,
    StepStats,
    Timings,
)
from apps.fusion.schemas import Source as SeatSource
from apps.providers.base import ModelGateway, Usage, text_storable
from apps.webtools.toolbox import toolbox_from_settings

if TYPE_CHECKING:
    from apps.api.plans import ApiPanelChoice, Plan, User


class FusionFold:
    """Folds engine events into the brief's result object and the run's step figures."""

    def __init__(self, *, gateway: ModelGateway, choice: ApiPanelChoice, stream_panel: bool = False) -> None:
        self.choice = choice
        # Seats' text and reasoning deltas reach the caller only when asked for (``fusion.stream_panel``).
        self.stream_panel = stream_panel
        self.seat_models: dict[int, str] = {seat["seat"]: seat["model"] for seat in choice.snapshot["seats"]}
        self.responses: dict[int, PanelResponse] = {}
        self.sources: list[SeatSource] = []
        self.failed: dict[int, FailedModel] = {}
        self.steps: list[StepStats] = []
        self.analysis: dict[str, Any] | None = None
        self.analysis_error: str | None = None
        self.analysed = False
        self.failure: RunFailed | None = None
        self.started = time.perf_counter()
        self.conversation_id: int | None = None
        self.turn_id: int | None = None
        models = [seat["model"] for seat in choice.snapshot["seats"]] + [choice.snapshot["judge"]]
        self.demo = any(gateway.is_demo(model) for model in models)

    def apply(self, event: Any) -> None:
        judge = self.choice.snapshot["judge"]
        if isinstance(event, SeatDone):
            self.responses[event.seat] = PanelResponse(model=event.model, content=event.content)
            self.sources.extend(event.sources)
            self._step("seat", event.model, "done", event.usage, event.timings, seat=event.seat)
        elif isinstance(event, SeatFailed):
            self.sources.extend(event.sources)
            self.failed[event.seat] = FailedModel(
                model=event.model, error=event.error, status_code=event.status_code
            )
            status: Literal["missing", "failed"] = "missing" if event.reason == "missing" else "failed"
            self._step("seat", event.model, status, event.usage, event.timings, seat=event.seat)
        elif isinstance(event, AnalysisDone):
            self.analysed = True
            self.analysis = event.analysis.model_dump()
            self._step("judge", judge, "done", event.usage, event.timings)
        elif isinstance(event, AnalysisFailed):
            self.analysed = True
            self.analysis_error = event.reason
            self._step("judge", judge, "failed", event.usage, event.timings)
        elif isinstance(event, RunFailed):
            self.failure = event

    def progress(self, event: Any) -> dict[str, Any] | None:
        """What the caller is told about ``event`` while streaming (None: nothing)."""
        if isinstance(event, RunStarted):
            return {
                "type": "run.started",
                "panel": self.choice.label,
                "seats": [{"seat": s.seat, "model": s.model} for s in event.seats],
                "judge": event.judge,
                "conversation_id": self.conversation_id,
                "turn_id": self.turn_id,
            }
        if isinstance(event, SeatDelta | SeatReasoningDelta):
            if not self.stream_panel:
                return None
            return {
                "type": event.type,
                "seat": event.seat,
                "model": self.seat_models.get(event.seat, ""),
                "offset": event.offset,
                "text": event.text,
            }
        if isinstance(event, SeatStarted):
            return {"type": "seat.started", "seat": event.seat, "model": event.model}
        if isinstance(event, SeatDone):
            return {
                "type": "seat.done",
                "seat": event.seat,
                "model": event.model,
                "duration_ms": event.timings.duration_ms,
            }
        if isinstance(event, SeatFailed):
            return {
                "type": "seat.failed",
                "seat": event.seat,
                "model": event.model,
                "reason": event.reason,
                "error": event.error,
                "status_code": event.status_code,
            }
        if isinstance(event, SeatToolCall):
            return {"type": "seat.tool_call", "seat": event.seat, "tool": event.name, "detail": event.detail}
        if isinstance(event, SeatToolResult):
            return {
                "type": "seat.tool_result",
                "seat": event.seat,
                "tool": event.name,
                "ok": event.ok,
                "detail": event.detail,
                "sources": [source.model_dump() for source in event.sources],
            }
        if isinstance(event, AnalysisStarted):
            return {"type": "analysis.started", "model": event.model}
        if isinstance(event, AnalysisDone):
            return {"type": "analysis.done", "analysis": event.analysis.model_dump()}
        if isinstance(event, AnalysisFailed):
            return {"type": "analysis.failed", "reason": event.reason, "detail": event.detail}
        return None

    def _step(
        self,
        role: Literal["seat", "judge", "writer"],
        model: str,
        status: Literal["done", "failed", "missing", "cancelled"],
        usage: Usage,
        timings: Timings,
        seat: int | None = None,
    ) -> None:
        self.steps.append(
            StepStats(role=role, seat=seat, model=model, status=status, usage=usage, timings=timings)
        )

    @property
    def usage(self) -> Usage:
        return totals_build(steps=self.steps, started=self.started).usage

    def result(self) -> FusionResult:
        extras: dict[str, Any] = {
            "demo": self.demo,
            "panel": self.choice.label,
            "conversation_id": self.conversation_id,
            "turn_id": self.turn_id,
        }
        failed = [self.failed[seat] for seat in sorted(self.failed)]
        if self.failure is not None and not self.analysed:
            reason = self.failure.reason
            error = "all panel models failed" if reason == "all_panels_failed" else self.failure.message
            return FusionResult(
                status="error", error=error, failure_reason=reason, failed_models=failed, **extras
            )
        return FusionResult(
            status="ok",
            analysis=self.analysis,
            analysis_error=self.analysis_error,
            responses=[self.responses[seat] for seat in sorted(self.responses)],
            failed_models=failed,
            sources=[Source(url=s.url, title=s.title) for s in sources_unique(self.sources)],
            **extras,
        )


@database_sync_to_async
def _turn_begin(
    *, user: User, choice: ApiPanelChoice, prompt: str, history: list[PriorTurn], system: str
) -> tuple[int, int, TurnRecorder, FusionRequest]:
    """Save the run's conversation and turn (source "api") and build its engine request."""
    snapshot = choice.snapshot
    if system:
        # The caller's system text reaches every panel model, after the seat's own system prompt if any; the
        # snapshot is stored as JSON, which PostgreSQL refuses with a NUL in it.
        system = text_storable(system)
        snapshot = {
            **snapshot,
            "seats": [
                {**seat, "system_prompt": "\n\n".join(p for p in (seat.get("system_prompt"), system) if p)}
                for seat in snapshot["seats"]
            ],
        }
    try:
        conversation = conversation_create(owner=user, source="api")
        turn = turn_create(
            conversation=conversation, prompt=prompt, panel_snapshot=snapshot, panel=choice.panel
        )
    except ChatError as error:
        raise ApiError(400, str(error), param="messages") from None
    request = fusion_request_for(turn=turn)
    # The API is stateless: the conversation so far comes with the request, not from earlier turns.
    request = request.model_copy(update={"history": history})
    return conversation.pk, turn.pk, TurnRecorder(turn=turn), request


async def fusion_start(
    *,
    user: User,
    choice: ApiPanelChoice,
    gateway: ModelGateway,
    prompt: str,
    history: list[PriorTurn],
    system: str,
    stream_panel: bool = False,
) -> tuple[FusionFold, TurnRecorder, FusionRequest]:
    fold = FusionFold(gateway=gateway, choice=choice, stream_panel=stream_panel)
    conversation_id, turn_id, recorder, request = await _turn_begin(
        user=user, choice=choice, prompt=prompt, history=history, system=system
    )
    fold.conversation_id, fold.turn_id = conversation_id, turn_id
    return fold, recorder, request


@contextlib.asynccontextmanager
async def recording(
    recorder: TurnRecorder, source: AsyncIterator[FusionEvent]
) -> AsyncIterator[AsyncIterator[FusionEvent]]:
    """Record ``source`` through ``recorder`` and read its events as they are recorded.

    The recording runs in the recorder's own task, so a caller who leaves (closes the stream, or drops the
    connection, which makes the server cancel the request) stops only its reading here: the run is then
    cancelled through the recorder, the turn ends as cancelled, what streamed kept
    (``TurnRecorder.subscribe``).
    """
    events = recorder.subscribe()
    async with contextlib.aclosing(events):
        await recorder.start(source)
        yield events


async def fusion_model_run(
    *, user: User, plan: Plan, gateway: ModelGateway
) -> AsyncGenerator[ApiEvent, None]:
    """The model-slug method: the whole pipeline, the writer's answer as the completion."""
    assert plan.choice is not None
    prompt, history, system = conversation_parts(plan.request.messages)
    fold, recorder, request = await fusion_start(
        user=user,
        choice=plan.choice,
        gateway=gateway,
        prompt=prompt,
        history=history,
        system=system,
        stream_panel=plan.request.stream_panel,
    )
    engine = run_fusion(request, gateway=gateway, toolbox=toolbox_from_settings())
    async with recording(recorder, engine) as events:
        async for event in events:
            # Deltas are most of the events: each costs one check unless the caller follows the panel.
            if isinstance(event, FinalDelta):
                yield TextOut(event.text)
                continue
            if isinstance(event, SeatDelta | SeatReasoningDelta) and not fold.stream_panel:
                continue
            fold.apply(event)
            payload = fold.progress(event)
            if payload is not None:
                yield ProgressOut(payload, event)
            if isinstance(event, AnalysisDone | AnalysisFailed):
                yield FusionOut(fold.result())
            elif isinstance(event, RunDone):
                yield FinishOut("stop", event.totals.usage, fold.result())
                return
            elif isinstance(event, RunFailed):
                raise run_failed_error(event)


# A run that failed for a reason the provider gave keeps the provider's status; any other is our 502.
RUN_FAILED_STATUS = {"invalid_model": 404, "insufficient_credits": 402, "rate_limited": 429}


def run_failed_error(event: RunFailed) -> ApiError:
    status = RUN_FAILED_STATUS.get(event.reason, 502)
    return ApiError(status, event.message, code=event.reason, failure_reason=event.reason)
