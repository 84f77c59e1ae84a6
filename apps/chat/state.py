"""The live picture of one turn: what the templates render, what the recorder keeps in memory and flushes.

A ``TurnState`` is built either from the database (``turn_state_from_db``) or, while a run is alive, kept
up to date by the ``TurnRecorder`` from engine events (``TurnState.apply``). Both paths render through the
same templates, so a snapshot from a live recorder and a page rendered from the database look the same.
Text is kept as a list of chunks with a running length: appending is O(1) and the length is the offset the
next delta applies at (in Unicode code points, which is what room.js counts too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils.functional import cached_property
from django.utils.safestring import SafeString

from apps.core.markdown import render_markdown
from apps.fusion import schemas as ev

if TYPE_CHECKING:
    from apps.chat.models import PanelAnswer, Turn

RUNNING = "running"
TERMINAL_STATUSES = frozenset({"done", "failed", "cancelled", "interrupted"})
# Seat statuses after which a seat's text no longer changes.
SEAT_FINISHED = frozenset({"done", "failed", "missing", "cancelled"})


class TextBuffer:
    """Append-only text with O(1) appends and a code-point length."""

    __slots__ = ("_chunks", "length")

    def __init__(self, text: str = "") -> None:
        self._chunks: list[str] = [text] if text else []
        self.length = len(text)

    def append(self, text: str) -> int:
        """Append ``text`` and return the offset it was appended at."""
        offset = self.length
        self._chunks.append(text)
        self.length += len(text)
        return offset

    def replace(self, text: str) -> None:
        self._chunks = [text] if text else []
        self.length = len(text)

    @property
    def text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""


def format_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.1f} s"


def format_cost(value: float | None) -> str:
    if value is None:
        return "cost unknown"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


@dataclass
class SeatState:
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
    ttft_ms: float | None = None
    duration_ms: float | None = None
    # Web tool calls in order: {"id", "name", "detail", "status": running|ok|failed|stopped, "result"}.
    tools: list[dict[str, str]] = field(default_factory=list)
    # Pages the seat found or read: {"url", "title"}, one per URL, http(s) only.
    sources: list[dict[str, str]] = field(default_factory=list)
    dirty: bool = False
    _html: SafeString | None = None

    @property
    def text(self) -> str:
        return self.buffer.text

    @property
    def finished(self) -> bool:
        return self.status in SEAT_FINISHED

    @property
    def html(self) -> SafeString:
        """The finished answer as sanitised Markdown (rendered once)."""
        if self._html is None:
            self._html = render_markdown(self.text)
        return self._html

    @property
    def ttft(self) -> str:
        return format_ms(self.ttft_ms)

    @property
    def duration(self) -> str:
        return format_ms(self.duration_ms)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_label(self) -> str:
        return format_cost(self.cost)

    def sources_add(self, sources: list[ev.Source]) -> None:
        known = {source["url"] for source in self.sources}
        for source in sources:
            # Links are rendered into the page: only web addresses, never javascript: or data:.
            if source.url not in known and source.url.lower().startswith(("https://", "http://")):
                known.add(source.url)
                self.sources.append({"url": source.url, "title": source.title})


@dataclass
class TurnState:
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
    judge_step: ev.StepStats | None = None
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
    # Turn-level fields changed since the last flush.
    dirty: bool = False
    _final_html: SafeString | None = None

    # --- what the templates read ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def final_text(self) -> str:
        return self.final.text

    @property
    def final_html(self) -> SafeString:
        if self._final_html is None:
            self._final_html = render_markdown(self.final_text)
        return self._final_html

    @property
    def final_streaming(self) -> bool:
        """The fused answer is shown as escaped text while it streams, as Markdown once done or stopped."""
        return self.running and not self.final_done

    @property
    def seats_finished(self) -> int:
        return sum(1 for seat in self.seats if seat.finished)

    @property
    def progress(self) -> str:
        if self.status == RUNNING:
            if self.phase == "analysis":
                return "analysing"
            if self.phase == "writing":
                return "writing"
            if self.phase == "finished":
                return "finishing"
            return f"panel {self.seats_finished}/{len(self.seats)} done"
        if self.status == "done":
            return "done"
        if self.status == "cancelled":
            return "cancelled"
        if self.status == "interrupted":
            return "interrupted"
        return "failed"

    @property
    def duration(self) -> str:
        value = self.totals.get("duration_ms") if self.totals else None
        return format_ms(value) if isinstance(value, int | float) else ""

    @property
    def total_tokens(self) -> int:
        usage = self.totals.get("usage") if self.totals else None
        if isinstance(usage, dict):
            return int(usage.get("total_tokens") or 0)
        return 0

    @property
    def cost_label(self) -> str:
        return format_cost(self.cost)

    @property
    def sources(self) -> list[dict[str, str]]:
        """Every seat's sources, one per URL, in seat order (the API's ``sources``, for the page)."""
        seen: dict[str, dict[str, str]] = {}
        for seat in self.seats:
            for source in seat.sources:
                seen.setdefault(source["url"], source)
        return list(seen.values())

    @cached_property
    def model_names(self) -> dict[str, str]:
        return {seat.model: seat.name for seat in self.seats}

    @property
    def analysis_view(self) -> dict[str, Any] | None:
        """The analysis with model ids replaced by the names the columns show."""
        if not self.analysis:
            return None
        names = self.model_names
        a = self.analysis

        def name(model: Any) -> str:
            return names.get(str(model), str(model))

        return {
            "consensus": a.get("consensus", []),
            "contradictions": [
                {
                    "topic": c.get("topic", ""),
                    "stances": [
                        {"model": name(s.get("model")), "stance": s.get("stance", "")}
                        for s in c.get("stances", [])
                    ],
                }
                for c in a.get("contradictions", [])
            ],
            "partial_coverage": [
                {"point": p.get("point", ""), "models": [name(m) for m in p.get("models", [])]}
                for p in a.get("partial_coverage", [])
            ],
            "unique_insights": [
                {"model": name(u.get("model")), "insight": u.get("insight", "")}
                for u in a.get("unique_insights", [])
            ],
            "blind_spots": a.get("blind_spots", []),
        }

    # --- event application (the recorder) ---------------------------------------------------------------

    def seat(self, number: int) -> SeatState:
        for seat in self.seats:
            if seat.seat == number:
                return seat
        raise KeyError(number)

    def apply(self, event: Any) -> None:
        """Fold one engine event into the state. Deltas are handled by the recorder's fast path."""
        if isinstance(event, ev.RunStarted):
            self.phase = "panel"
        elif isinstance(event, ev.SeatStarted):
            seat = self.seat(event.seat)
            seat.status = "streaming"
            seat.dirty = True
        elif isinstance(event, ev.SeatToolCall):
            seat = self.seat(event.seat)
            call = {"id": event.call_id, "name": event.name, "detail": event.detail}
            seat.tools.append({**call, "status": "running", "result": ""})
            seat.dirty = True
        elif isinstance(event, ev.SeatToolResult):
            seat = self.seat(event.seat)
            for call in seat.tools:
                if call["id"] == event.call_id:
                    call.update(status="ok" if event.ok else "failed", result=event.detail)
            seat.sources_add(event.sources)
            seat.dirty = True
        elif isinstance(event, ev.SeatDone):
            self._seat_done(event)
        elif isinstance(event, ev.SeatFailed):
            self._seat_failed(event)
        elif isinstance(event, ev.AnalysisStarted):
            self.phase = "analysis"
        elif isinstance(event, ev.AnalysisDone):
            self.analysis = event.analysis.model_dump()
            self.analysis_raw = event.raw
            self.judge_step = ev.StepStats(
                role="judge", model=self.judge, status="done", usage=event.usage, timings=event.timings
            )
        elif isinstance(event, ev.AnalysisFailed):
            self.analysis_error = event.reason
            self.analysis_error_detail = event.detail
            self.analysis_raw = event.raw
            self.judge_step = ev.StepStats(
                role="judge", model=self.judge, status="failed", usage=event.usage, timings=event.timings
            )
        elif isinstance(event, ev.FinalStarted):
            self.phase = "writing"
            self.final_started = True
        elif isinstance(event, ev.FinalDone):
            if event.content and event.content != self.final.text:
                self.final.replace(event.content)
            self.final_done = True
            self._final_html = None
        elif isinstance(event, ev.RunDone):
            self._totals(event.totals)
            self.status = "done"
            self.phase = "finished"
        elif isinstance(event, ev.RunFailed):
            self._totals(event.totals)
            if len(event.partial_final) > self.final.length:
                self.final.replace(event.partial_final)
            self.finish(
                status="cancelled" if event.reason == "cancelled" else "failed",
                reason=event.reason,
                message=event.message,
            )
        self.dirty = True

    def finish(self, *, status: str, reason: str = "", message: str = "") -> None:
        """End the turn: seats still in flight are marked as stopped, keeping their text."""
        self.status = status
        self.failure_reason = reason
        self.error_message = message
        self._final_html = None
        for seat in self.seats:
            if not seat.finished:
                seat.status = "cancelled"
                seat.dirty = True
            for call in seat.tools:
                if call["status"] == "running":
                    call["status"] = "stopped"
                    seat.dirty = True
        self.dirty = True

    def _seat_done(self, event: ev.SeatDone) -> None:
        seat = self.seat(event.seat)
        if event.content != seat.buffer.text:
            seat.buffer.replace(event.content)
        seat.status = "done"
        seat.sources_add(event.sources)
        self._seat_figures(seat, event.usage, event.timings)
        seat._html = None

    def _seat_failed(self, event: ev.SeatFailed) -> None:
        seat = self.seat(event.seat)
        if len(event.partial_text) > seat.buffer.length:
            seat.buffer.replace(event.partial_text)
        seat.status = "missing" if event.reason == "missing" else "failed"
        seat.error = event.error
        seat.status_code = event.status_code
        seat.sources_add(event.sources)
        self._seat_figures(seat, event.usage, event.timings)

    @staticmethod
    def _seat_figures(seat: SeatState, usage: Any, timings: ev.Timings) -> None:
        seat.prompt_tokens = usage.prompt_tokens
        seat.completion_tokens = usage.completion_tokens
        seat.cost = usage.cost
        seat.ttft_ms = timings.ttft_ms
        seat.duration_ms = timings.duration_ms
        seat.dirty = True

    def _totals(self, totals: ev.Totals) -> None:
        self.totals = totals.model_dump()
        self.cost = totals.usage.cost


def seat_label(model: str) -> tuple[str, bool]:
    """A model's display name and whether it is a demo model (from the cached catalog: no network wait)."""
    from apps.providers.registry import gateway_from_settings

    gateway = gateway_from_settings()
    info = gateway.model_info(model)
    is_demo = gateway.is_demo(model) or bool(info and info.is_demo)
    return (info.name if info and info.name else model), is_demo


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
