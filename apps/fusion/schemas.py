"""The engine's contract: a ``FusionRequest`` in, a stream of ``FusionEvent`` out.

Plain pydantic, no Django. Every event carries ``type`` so a recorder, a WebSocket or an API stream can
dispatch on it; text deltas (a seat's answer, a seat's reasoning, the fused answer) carry the ``offset`` at
which they apply, counted by the engine in code points, so a listener can tell a gap from a duplicate.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from apps.providers.base import Usage

MAX_SEATS = 8
MAX_PROMPT_CHARS = 32_000
# Seconds the panel has when nobody says otherwise: then the judge starts with the answers that are done, and
# a seat still running is reported missing (its partial text kept). Without one, a seat that goes silent holds
# every other for the provider's read timeout (120 s, and a silent start is retried), and the person waits
# minutes for a judge that could have started. 90 s leaves room for a reasoning model's thinking plus a
# long answer, or a web-tool round or two (a fetch is capped at 15 s) before it; a panel that needs more
# (slow local models, deep tool use) says so in its options, up to an hour.
DEFAULT_DEADLINE_S = 90.0


class SeatSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seat: int = Field(ge=1, le=MAX_SEATS)
    model: str = Field(min_length=1, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    system_prompt: str | None = Field(default=None, max_length=8000)


class PriorTurn(BaseModel):
    prompt: str
    answer: str


class FusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds after the panel starts at which the judge starts with whatever is done; None (only when given
    # explicitly) waits for every seat. Read at validation time, so tests can shorten the default.
    deadline_s: float | None = Field(default_factory=lambda: DEFAULT_DEADLINE_S, gt=0, le=3600)
    # Start the judge once this many seats are done (None: wait for every seat).
    quorum: int | None = Field(default=None, ge=1, le=MAX_SEATS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_completion_tokens: int = Field(default=16_000, ge=1, le=200_000)
    max_tool_calls: int = Field(default=4, ge=1, le=16)
    # Offer the server's web tools (search, fetch) to panel models that can call tools; False: none.
    web_tools: bool = True


class Source(BaseModel):
    """A web page a panel model searched for or read."""

    url: str
    title: str = ""


class KeptAnswer(BaseModel):
    """A seat's answer already known from an earlier run of the same turn: the panel phase does not call
    that seat again, the judge and the writer read the answer as if it had just been given."""

    model_config = ConfigDict(extra="forbid")

    seat: int = Field(ge=1, le=MAX_SEATS)
    model: str = Field(min_length=1, max_length=200)
    content: str
    sources: list[Source] = Field(default_factory=list)


class FusionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    history: list[PriorTurn] = Field(default_factory=list)
    seats: list[SeatSpec] = Field(min_length=1, max_length=MAX_SEATS)
    judge: str = Field(min_length=1)
    writer: str = Field(min_length=1)
    options: FusionOptions = Field(default_factory=FusionOptions)
    # Answers kept from an earlier run of this turn (a retry of its failed seats): each names a seat of
    # ``seats`` with the same model; those seats are not run and yield no seat events.
    kept: list[KeptAnswer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _kept_seats_exist(self) -> FusionRequest:
        models = {spec.seat: spec.model for spec in self.seats}
        seen: set[int] = set()
        for answer in self.kept:
            if models.get(answer.seat) != answer.model or answer.seat in seen:
                raise ValueError(f"kept answer for seat {answer.seat} does not match a seat of the panel")
            seen.add(answer.seat)
        return self

    @property
    def seats_to_run(self) -> list[SeatSpec]:
        kept = {answer.seat for answer in self.kept}
        return [spec for spec in self.seats if spec.seat not in kept]


# --- The judge's analysis (the brief's object; all five arrays required, possibly empty) ----------------


class Stance(BaseModel):
    model: str
    stance: str


class Contradiction(BaseModel):
    topic: str
    stances: list[Stance]


class PartialCoverage(BaseModel):
    models: list[str]
    point: str


class UniqueInsight(BaseModel):
    model: str
    insight: str


class Analysis(BaseModel):
    model_config = ConfigDict(extra="ignore")

    consensus: list[str]
    contradictions: list[Contradiction]
    partial_coverage: list[PartialCoverage]
    unique_insights: list[UniqueInsight]
    blind_spots: list[str]


# --- Measurements --------------------------------------------------------------------------------------


class Timings(BaseModel):
    ttft_ms: float | None = None
    duration_ms: float | None = None


class StepStats(BaseModel):
    """One model call's figures: a seat, the judge (with its repair attempt) or the writer."""

    role: Literal["seat", "judge", "writer"]
    seat: int | None = None
    model: str
    status: Literal["done", "failed", "missing", "cancelled"]
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    # The usage was estimated from the streamed text (a call cut off before the provider reported any).
    estimated: bool = False


class Totals(BaseModel):
    steps: list[StepStats] = Field(default_factory=list)
    # ``usage.cost`` is None as soon as one step's cost is unknown; ``known_cost`` is the sum of the
    # costs that are known, so a caller can show "at least $x" instead of nothing.
    usage: Usage = Field(default_factory=Usage)
    known_cost: float = 0.0
    duration_ms: float = 0.0
    # Some step's usage is an estimate (``StepStats.estimated``).
    estimated: bool = False


# --- Events --------------------------------------------------------------------------------------------


class RunStarted(BaseModel):
    type: Literal["run.started"] = "run.started"
    seats: list[SeatSpec]
    judge: str
    writer: str


class SeatStarted(BaseModel):
    type: Literal["seat.started"] = "seat.started"
    seat: int
    model: str


class SeatDelta(BaseModel):
    type: Literal["seat.delta"] = "seat.delta"
    seat: int
    text: str
    offset: int  # characters of this seat's answer before this delta


class SeatReasoningDelta(BaseModel):
    """What a reasoning model streams before (or while) answering; its own text, apart from the answer."""

    type: Literal["seat.reasoning"] = "seat.reasoning"
    seat: int
    text: str
    offset: int  # characters of this seat's reasoning before this delta


class SeatToolCall(BaseModel):
    """A panel model asked for a web tool; ``detail`` says what in words (the query, the address)."""

    type: Literal["seat.tool_call"] = "seat.tool_call"
    seat: int
    call_id: str  # unique within the seat (not the model's own id, which a model may reuse)
    name: str
    detail: str


class SeatToolResult(BaseModel):
    type: Literal["seat.tool_result"] = "seat.tool_result"
    seat: int
    call_id: str
    name: str
    ok: bool
    detail: str
    sources: list[Source] = Field(default_factory=list)


class SeatDone(BaseModel):
    type: Literal["seat.done"] = "seat.done"
    seat: int
    model: str
    content: str
    usage: Usage
    timings: Timings
    sources: list[Source] = Field(default_factory=list)


class SeatFailed(BaseModel):
    type: Literal["seat.failed"] = "seat.failed"
    seat: int
    model: str
    # "missing": the judge started (quorum or deadline) before this seat finished.
    reason: Literal["error", "missing"]
    error: str
    status_code: int | None = None
    partial_text: str = ""
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    sources: list[Source] = Field(default_factory=list)


class AnalysisStarted(BaseModel):
    type: Literal["analysis.started"] = "analysis.started"
    model: str


class AnalysisDone(BaseModel):
    type: Literal["analysis.done"] = "analysis.done"
    analysis: Analysis
    raw: str
    usage: Usage
    timings: Timings


class AnalysisFailed(BaseModel):
    """The degraded path: the writer works from the raw answers; ``reason`` is one of the brief's codes."""

    type: Literal["analysis.failed"] = "analysis.failed"
    reason: Literal[
        "judge_not_valid_json", "judge_schema_mismatch", "judge_upstream_error", "judge_empty_completion"
    ]
    detail: str
    raw: str = ""
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)


class FinalStarted(BaseModel):
    type: Literal["final.started"] = "final.started"
    model: str


class FinalDelta(BaseModel):
    type: Literal["final.delta"] = "final.delta"
    text: str
    offset: int


class FinalDone(BaseModel):
    type: Literal["final.done"] = "final.done"
    content: str
    usage: Usage
    timings: Timings


class RunDone(BaseModel):
    type: Literal["run.done"] = "run.done"
    totals: Totals


# ``insufficient_credits`` / ``rate_limited`` / ``invalid_model``: every panel model (or the writer) failed
# for that one reason, as the provider said it (OpenRouter's 402, 429, unknown model).
FailureReason = Literal[
    "all_panels_failed",
    "writer_failed",
    "invalid_model",
    "insufficient_credits",
    "rate_limited",
    "cancelled",
    "unexpected_error",
]


class RunFailed(BaseModel):
    type: Literal["run.failed"] = "run.failed"
    reason: FailureReason
    message: str
    partial_final: str = ""
    totals: Totals = Field(default_factory=Totals)


FusionEvent = Annotated[
    RunStarted
    | SeatStarted
    | SeatDelta
    | SeatReasoningDelta
    | SeatToolCall
    | SeatToolResult
    | SeatDone
    | SeatFailed
    | AnalysisStarted
    | AnalysisDone
    | AnalysisFailed
    | FinalStarted
    | FinalDelta
    | FinalDone
    | RunDone
    | RunFailed,
    Field(discriminator="type"),
]

# The events that carry streamed text, each at the offset the engine counted.
DeltaEvent = SeatDelta | SeatReasoningDelta | FinalDelta
