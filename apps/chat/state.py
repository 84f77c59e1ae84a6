"""A turn's live state and how engine events change it (the fold); how it reads on the page is in
``presentation.py``.

A ``TurnState`` is built either from the database (``turn_state_from_db``) or, while a run is alive, kept
up to date by the ``TurnRecorder`` from engine events (``TurnState.apply``). Both paths render through the
same templates, so a snapshot from a live recorder and a page rendered from the database look the same.

Text is kept as a list of chunks with a running length: appending is O(1). A delta is appended at the offset
the engine gave it (code points, which is what room.js counts too); the length is only checked against it,
never used instead of it, and a mismatch is logged as the defect it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, assert_never

from apps.chat.presentation import SeatView, TurnView
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
    DeltaEvent,
    FinalDelta,
    FinalDone,
    FinalStarted,
    FusionEvent,
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
    Source,
    StepStats,
    Timings,
    Totals,
)
from apps.providers.base import Usage

if TYPE_CHECKING:
    from apps.chat.models import PanelAnswer, Turn

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"done", "failed", "cancelled", "interrupted"})
# Seat statuses after which a seat's text no longer changes.
SEAT_FINISHED = frozenset({"done", "failed", "missing", "cancelled"})


class TextBuffer:
    """Append-only text with O(1) appends and a code-point length."""

    __slots__ = ("_chunks", "length")

    def __init__(self, text: str = "") -> None:
        self._chunks: list[str] = [text] if text else []
        self.length = len(text)

    def append_at(self, offset: int, text: str) -> tuple[int, str]:
        """Append ``text``, which the engine says starts at ``offset``: where it now starts, and what of it
        was appended. Both are ``offset`` and ``text`` unless the two sides disagree (a defect: the caller
        logs it); then what is already here stays, a repeat is trimmed and a gap is closed up, so that
        what goes on to the viewers matches this buffer and its snapshots exactly."""
        length = self.length
        if offset < length:
            text = text[length - offset :]
        if text:
            self._chunks.append(text)
            self.length = length + len(text)
        return length, text

    def replace(self, text: str) -> None:
        self._chunks = [text] if text else []
        self.length = len(text)

    @property
    def text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""


@dataclass
class SeatState(SeatView):
    seat: int
    model: str
    name: str
    is_demo: bool
    status: str = "waiting"
    buffer: TextBuffer = field(default_factory=TextBuffer)
    # What a reasoning model streamed before (or while) answering: shown folded, never sent on to the judge.
    reasoning: TextBuffer = field(default_factory=TextBuffer)
    error: str = ""
    status_code: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    # Tokens and cost estimated from the streamed text (cut off before the provider reported usage).
    usage_estimated: bool = False
    ttft_ms: float | None = None
    duration_ms: float | None = None
    # Kept from an earlier run of the turn (a retry of its failed seats): not run again, not counted again.
    kept: bool = False
    # Web tool calls in order: {"id", "name", "detail", "status": running|ok|failed|stopped, "result"}.
    tools: list[dict[str, str]] = field(default_factory=list)
    # Pages the seat found or read: {"url", "title"}, one per URL, http(s) only.
    sources: list[dict[str, str]] = field(default_factory=list)
    # Changed since the last write to the database.
    dirty: bool = False

    @property
    def text(self) -> str:
        return self.buffer.text

    @property
    def finished(self) -> bool:
        return self.status in SEAT_FINISHED

    def sources_add(self, sources: list[Source]) -> None:
        known = {source["url"] for source in self.sources}
        for source in sources:
            # Links are rendered into the page: only web addresses, never javascript: or data:.
            if source.url not in known and source.url.lower().startswith(("https://", "http://")):
                known.add(source.url)
                self.sources.append({"url": source.url, "title": source.title})


@dataclass
class TurnState(TurnView):
    turn_id: int
    conversation_id: int
    position: int
    prompt: str
    status: str
    phase: str
    seats: list[SeatState]
    judge: str
    writer: str
    panel_name: str = ""
    analysis: dict[str, Any] | None = None
    analysis_raw: str = ""
    analysis_error: str = ""
    analysis_error_detail: str = ""
    # The judge's figures once it answered (for the totals of a turn cancelled after the analysis).
    judge_step: StepStats | None = None
    final: TextBuffer = field(default_factory=TextBuffer)
    final_started: bool = False
    final_done: bool = False
    failure_reason: str = ""
    error_message: str = ""
    totals: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Characters of the earlier turns' prompts and fused answers (the history this turn was sent): the
    # "writer alone" estimate of the turn's footer reads it. None: unknown.
    history_chars: int | None = None
    # Which version of its position this turn is, of how many (regenerated and edited turns).
    version: int = 1
    versions: int = 1
    # Whether its position is the conversation's last (only the last turn is regenerated or edited).
    is_last: bool = True
    # A retry of failed seats: the totals of the runs before it, which this run's figures are added to.
    totals_before: dict[str, Any] | None = None
    # Turn-level fields changed since the last write to the database.
    dirty: bool = False

    def seat(self, number: int) -> SeatState:
        for seat in self.seats:
            if seat.seat == number:
                return seat
        raise KeyError(number)

    def unsaved_mark(self) -> None:
        """After a failed write: everything is written again next time (what it held is not known saved)."""
        self.dirty = True
        for seat in self.seats:
            seat.dirty = True

    # --- the fold ---------------------------------------------------------------------------------------

    def apply(self, event: FusionEvent) -> None:
        """Fold one engine event into the state."""
        match event:
            case SeatDelta() | SeatReasoningDelta() | FinalDelta():
                self.delta_apply(event)
                return
            case RunStarted():
                self.phase = "panel"
            case SeatStarted():
                seat = self.seat(event.seat)
                seat.status = "streaming"
                seat.dirty = True
            case SeatToolCall():
                seat = self.seat(event.seat)
                call = {"id": event.call_id, "name": event.name, "detail": event.detail}
                seat.tools.append({**call, "status": "running", "result": ""})
                seat.dirty = True
            case SeatToolResult():
                seat = self.seat(event.seat)
                for call in seat.tools:
                    if call["id"] == event.call_id:
                        call.update(status="ok" if event.ok else "failed", result=event.detail)
                seat.sources_add(event.sources)
                seat.dirty = True
            case SeatDone():
                self._seat_done(event)
            case SeatFailed():
                self._seat_failed(event)
            case AnalysisStarted():
                self.phase = "analysis"
            case AnalysisDone():
                self.analysis = event.analysis.model_dump()
                self.analysis_raw = event.raw
                self.judge_step = StepStats(
                    role="judge", model=self.judge, status="done", usage=event.usage, timings=event.timings
                )
            case AnalysisFailed():
                self.analysis_error = event.reason
                self.analysis_error_detail = event.detail
                self.analysis_raw = event.raw
                self.judge_step = StepStats(
                    role="judge", model=self.judge, status="failed", usage=event.usage, timings=event.timings
                )
            case FinalStarted():
                self.phase = "writing"
                self.final_started = True
            case FinalDone():
                self._text_settle(self.final, event.content, "the final answer")
                self.final_done = True
            case RunDone():
                self._totals(event.totals)
                self.status = "done"
                self.phase = "finished"
            case RunFailed():
                self._totals(event.totals)
                if len(event.partial_final) > self.final.length:
                    self.final.replace(event.partial_final)
                self.finish(
                    status="cancelled" if event.reason == "cancelled" else "failed",
                    reason=event.reason,
                    message=event.message,
                )
            case _:
                assert_never(event)
        self.dirty = True

    def delta_apply(self, event: DeltaEvent) -> tuple[int, str]:
        """Append a delta's text at the engine's offset: where it starts and what was appended (the event's
        own offset and text, unless the recorder's text disagrees with the engine's: see ``append_at``)."""
        match event:
            case SeatDelta():
                seat = self.seat(event.seat)
                seat.dirty = True
                buffer = seat.buffer
            case SeatReasoningDelta():
                seat = self.seat(event.seat)
                seat.dirty = True
                buffer = seat.reasoning
            case FinalDelta():
                self.dirty = True
                buffer = self.final
            case _:
                assert_never(event)
        offset, text = buffer.append_at(event.offset, event.text)
        if offset != event.offset:
            column = "the final answer" if isinstance(event, FinalDelta) else f"seat {event.seat}"
            if isinstance(event, SeatReasoningDelta):
                column += " reasoning"
            logger.error(
                "turn %s, %s: a delta for offset %d came with %d characters held; the engine and the "
                "recorder disagree, the recorder's text is what viewers get until the text is finished",
                *(self.turn_id, column, event.offset, offset),
            )
        return offset, text

    def finish(self, *, status: str, reason: str = "", message: str = "") -> None:
        """End the turn: seats still in flight are marked as stopped, keeping their text."""
        self.status = status
        self.failure_reason = reason
        self.error_message = message
        for seat in self.seats:
            if not seat.finished:
                seat.status = "cancelled"
                seat.dirty = True
            for call in seat.tools:
                if call["status"] == "running":
                    call["status"] = "stopped"
                    seat.dirty = True
        self.dirty = True

    def _text_settle(self, buffer: TextBuffer, text: str, column: str) -> None:
        """A finished text as the engine reports it; it matches the deltas unless something is wrong."""
        if len(text) != buffer.length or text != buffer.text:
            logger.error(
                "turn %s, %s: the finished text (%d characters) differs from its deltas (%d); kept",
                *(self.turn_id, column, len(text), buffer.length),
            )
            buffer.replace(text)

    def _seat_done(self, event: SeatDone) -> None:
        seat = self.seat(event.seat)
        self._text_settle(seat.buffer, event.content, f"seat {event.seat}")
        seat.status = "done"
        seat.sources_add(event.sources)
        self._seat_figures(seat, event.usage, event.timings)

    def _seat_failed(self, event: SeatFailed) -> None:
        seat = self.seat(event.seat)
        self._text_settle(seat.buffer, event.partial_text, f"seat {event.seat}")
        seat.status = "missing" if event.reason == "missing" else "failed"
        seat.error = event.error
        seat.status_code = event.status_code
        seat.sources_add(event.sources)
        self._seat_figures(seat, event.usage, event.timings)

    @staticmethod
    def _seat_figures(seat: SeatState, usage: Usage, timings: Timings) -> None:
        seat.prompt_tokens = usage.prompt_tokens
        seat.completion_tokens = usage.completion_tokens
        seat.cost = usage.cost
        seat.ttft_ms = timings.ttft_ms
        seat.duration_ms = timings.duration_ms
        seat.dirty = True

    def _totals(self, totals: Totals) -> None:
        self.totals = totals_merge(self.totals_before, totals) if self.totals_before else totals.model_dump()
        usage = self.totals.get("usage") or {}
        self.cost = usage.get("cost")


def totals_merge(before: dict[str, Any], after: Totals) -> dict[str, Any]:
    """The figures of a turn run again (its failed seats retried): every step of both runs, usage summed.
    What was spent before stays spent, so the turn's cost is the sum; unknown once either is unknown."""
    try:
        earlier = Totals.model_validate(before)
    except ValueError:
        earlier = Totals()
    merged = Totals(
        steps=[*earlier.steps, *after.steps],
        usage=earlier.usage + after.usage,
        known_cost=earlier.known_cost + after.known_cost,
        duration_ms=earlier.duration_ms + after.duration_ms,
        estimated=earlier.estimated or after.estimated,
    )
    return merged.model_dump()


def turn_state_from_db(turn: Turn, answers: list[PanelAnswer] | None = None) -> TurnState:
    """The state of a turn as the database has it (after the last flush)."""
    snapshot = turn.panel_snapshot or {}
    labels = {int(s.get("seat", 0)): s for s in snapshot.get("seats", []) if isinstance(s, dict)}
    seats = []
    for answer in answers if answers is not None else list(turn.answers.all()):
        label = labels.get(answer.seat, {})
        seats.append(
            SeatState(
                seat=answer.seat,
                model=answer.model_id,
                name=str(label.get("name") or answer.model_id),
                is_demo=bool(label.get("is_demo", answer.model_id.startswith("demo/"))),
                status=answer.status,
                buffer=TextBuffer(answer.content),
                reasoning=TextBuffer(answer.reasoning),
                error=answer.error,
                status_code=answer.status_code,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                cost=answer.cost,
                usage_estimated=answer.usage_estimated,
                ttft_ms=answer.ttft_ms,
                duration_ms=answer.duration_ms,
                tools=[dict(call) for call in answer.tool_calls or [] if isinstance(call, dict)],
                sources=[dict(source) for source in answer.sources or [] if isinstance(source, dict)],
            )
        )
    return TurnState(
        turn_id=turn.pk,
        conversation_id=turn.conversation_id,
        position=turn.position,
        prompt=turn.prompt,
        status=turn.status,
        phase=turn.phase,
        seats=seats,
        judge=str(snapshot.get("judge", "")),
        writer=str(snapshot.get("writer", "")),
        panel_name=str(snapshot.get("name", "")),
        analysis=turn.analysis,
        analysis_raw=turn.analysis_raw,
        analysis_error=turn.analysis_error,
        analysis_error_detail=turn.analysis_error_detail,
        final=TextBuffer(turn.final_text),
        final_started=turn.phase in ("writing", "finished") or bool(turn.final_text),
        final_done=turn.phase == "finished" and turn.status == "done",
        failure_reason=turn.failure_reason,
        error_message=turn.error_message,
        totals=turn.totals or {},
        cost=turn.cost,
        started_at=turn.started_at,
        finished_at=turn.finished_at,
        version=turn.version,
        # The caller knows better (``selectors``); a turn being recorded is its position's newest version.
        versions=turn.version,
    )


def turn_state_initial(turn: Turn) -> TurnState:
    """The state of a turn that is about to run, from the turn row alone (no query: the recorder may build
    it on the event loop). Seats come from the frozen snapshot."""
    state = turn_state_from_db(turn, answers=[])
    state.seats = [
        SeatState(
            seat=int(seat["seat"]),
            model=str(seat["model"]),
            name=str(seat.get("name") or seat["model"]),
            is_demo=bool(seat.get("is_demo", str(seat["model"]).startswith("demo/"))),
        )
        for seat in (turn.panel_snapshot or {}).get("seats", [])
    ]
    return state
