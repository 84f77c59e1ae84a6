"""A conversation as a file: JSON (a versioned pydantic shape) and Markdown built from the same object.

``conversation_export(conversation)`` reads the turns as the pages do (``selectors.turn_states_for``: two
queries whatever the number of turns and seats) into a ``ConversationExport``; ``export_json`` and
``export_markdown`` write it out, ``export_filename`` names the file.

Text people and models wrote stays data: in JSON it is a string; in Markdown a prompt sits in a fenced block
longer than any backtick run inside it, so its Markdown or HTML shows as typed. Answers are Markdown by nature
and are written as such (they are the document being exported); the file is served as an attachment with
``nosniff``, never rendered by this site.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from django.utils import timezone
from django.utils.text import slugify
from pydantic import BaseModel, ConfigDict, Field

from apps.chat.models import Conversation
from apps.chat.selectors import turn_states_for
from apps.chat.state import TurnState

EXPORT_FORMAT: Literal["fusionroom.conversation"] = "fusionroom.conversation"
# Raise when the shape changes in a way a reader must know about (a field renamed, removed or retyped).
EXPORT_VERSION: Literal[1] = 1
FILENAME_MAX = 60


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceExport(_Strict):
    url: str
    title: str = ""


class StepExport(_Strict):
    """One model call's figures: a seat, the judge or the writer."""

    role: str
    seat: int | None = None
    model: str
    status: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


class SeatExport(_Strict):
    seat: int
    model: str
    label: str
    is_demo: bool
    status: str
    error: str = ""
    answer: str
    reasoning: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    duration_ms: float | None = None
    sources: list[SourceExport] = Field(default_factory=list)


class TurnExport(_Strict):
    position: int
    prompt: str
    status: str
    panel: str
    judge: str
    writer: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seats: list[SeatExport]
    # The judge's structured analysis as recorded (consensus, contradictions, ...); None on the degraded path.
    analysis: dict[str, Any] | None = None
    analysis_error: str = ""
    final_answer: str
    sources: list[SourceExport] = Field(default_factory=list)
    steps: list[StepExport] = Field(default_factory=list)
    total_tokens: int = 0
    # None when a step's cost is unknown (an unpriced model, a call cut off).
    cost: float | None = None


class TotalsExport(_Strict):
    turns: int
    total_tokens: int
    # None as soon as one turn's cost is unknown; ``known_cost`` sums the known ones.
    cost: float | None
    known_cost: float


class ConversationExport(_Strict):
    format: Literal["fusionroom.conversation"] = EXPORT_FORMAT
    version: Literal[1] = EXPORT_VERSION
    title: str
    source: str
    created_at: datetime
    exported_at: datetime
    turns: list[TurnExport]
    totals: TotalsExport


def _steps(totals: dict[str, Any]) -> list[StepExport]:
    steps = []
    for step in totals.get("steps") or []:
        if not isinstance(step, dict):
            continue
        usage = step.get("usage") or {}
        steps.append(
            StepExport(
                role=str(step.get("role", "")),
                seat=step.get("seat"),
                model=str(step.get("model", "")),
                status=str(step.get("status", "")),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cost=usage.get("cost"),
            )
        )
    return steps


def _turn_export(state: TurnState) -> TurnExport:
    seats = [
        SeatExport(
            seat=seat.seat,
            model=seat.model,
            label=seat.name,
            is_demo=seat.is_demo,
            status=seat.status,
            error=seat.error or "",
            answer=seat.text,
            reasoning=seat.reasoning.text,
            prompt_tokens=seat.prompt_tokens,
            completion_tokens=seat.completion_tokens,
            cost=seat.cost,
            duration_ms=seat.duration_ms,
            sources=[SourceExport(url=s["url"], title=s.get("title") or "") for s in seat.sources],
        )
        for seat in state.seats
    ]
    return TurnExport(
        position=state.position,
        prompt=state.prompt,
        status=state.status,
        panel=state.panel_name,
        judge=state.judge,
        writer=state.writer,
        started_at=state.started_at,
        finished_at=state.finished_at,
        seats=seats,
        analysis=state.analysis,
        analysis_error=state.analysis_error,
        final_answer=state.final_text,
        sources=[SourceExport(url=s["url"], title=s.get("title") or "") for s in state.sources],
        steps=_steps(state.totals),
        total_tokens=state.total_tokens,
        cost=state.cost,
    )


def conversation_export(*, conversation: Conversation) -> ConversationExport:
    """Everything a conversation holds, validated into the export's shape."""
    turns = [_turn_export(state) for state in turn_states_for(conversation=conversation)]
    costs = [turn.cost for turn in turns]
    return ConversationExport(
        title=conversation.title,
        source=conversation.source,
        created_at=conversation.created_at,
        exported_at=timezone.now(),
        turns=turns,
        totals=TotalsExport(
            turns=len(turns),
            total_tokens=sum(turn.total_tokens for turn in turns),
            cost=None if any(cost is None for cost in costs) else sum(c for c in costs if c is not None),
            known_cost=sum(cost for cost in costs if cost is not None),
        ),
    )


def export_json(export: ConversationExport) -> str:
    return export.model_dump_json(indent=2)


def export_filename(export: ConversationExport, extension: str) -> str:
    """``fusionroom-<title as ASCII slug>-<date>.<extension>``: nothing a header or a file system could
    misread (no quotes, slashes, dots or control characters from the title)."""
    slug = slugify(export.title)[:FILENAME_MAX].strip("-") or "conversation"
    return f"fusionroom-{slug}-{export.created_at:%Y-%m-%d}.{extension}"


def _fenced(text: str, info: str = "text") -> str:
    """``text`` in a code fence longer than any backtick run inside it: shown as typed by any renderer."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _line(text: str) -> str:
    """One line of plain text in Markdown: no line breaks; the characters that make emphasis, code, links,
    HTML, entities or tables escaped."""
    flat = " ".join(text.split())
    return re.sub(r"([\\`*_\[\]<>&|~])", r"\\\1", flat)


def _source_link(source: SourceExport) -> str:
    """An autolink for an http(s) address (spaces and angle brackets encoded), plain text otherwise."""
    title = _line(source.title)
    if re.match(r"https?://", source.url, re.I):
        url = source.url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
        return f"<{url}> {title}".rstrip()
    return f"{_line(source.url)} {title}".rstrip()


def _cost(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "$0" if value == 0 else f"${value:.6f}".rstrip("0")


def _analysis_markdown(analysis: dict[str, Any], names: dict[str, str]) -> list[str]:
    def name(model: Any) -> str:
        return _line(names.get(str(model), str(model)))

    out: list[str] = []
    sections: list[tuple[str, list[str]]] = [
        ("Consensus", [_line(str(item)) for item in analysis.get("consensus", [])]),
        (
            "Contradictions",
            [
                f"{_line(str(c.get('topic', '')))}: "
                + "; ".join(
                    f"{name(s.get('model'))}: {_line(str(s.get('stance', '')))}" for s in c.get("stances", [])
                )
                for c in analysis.get("contradictions", [])
            ],
        ),
        (
            "Partial coverage",
            [
                f"{_line(str(p.get('point', '')))} ({', '.join(name(m) for m in p.get('models', []))})"
                for p in analysis.get("partial_coverage", [])
            ],
        ),
        (
            "Unique insights",
            [
                f"{name(u.get('model'))}: {_line(str(u.get('insight', '')))}"
                for u in analysis.get("unique_insights", [])
            ],
        ),
        ("Blind spots", [_line(str(item)) for item in analysis.get("blind_spots", [])]),
    ]
    for title, items in sections:
        if items:
            out += [f"**{title}**", "", *(f"- {item}" for item in items), ""]
    return out


def export_markdown(export: ConversationExport) -> str:
    title = export.title or "Untitled conversation"
    out = [
        f"# {_line(title)}",
        "",
        f"Exported from Fusion Room on {export.exported_at:%Y-%m-%d %H:%M} UTC · {export.totals.turns} "
        f"turn{'s' if export.totals.turns != 1 else ''} · {export.totals.total_tokens} tokens · "
        f"cost {_cost(export.totals.cost)}",
        "",
    ]
    for turn in export.turns:
        names: dict[str, str] = {}
        for seat in turn.seats:
            # The analysis names models, not seats: a model seated twice goes by its first seat's label.
            names.setdefault(seat.model, seat.label)
        out += [f"## Turn {turn.position}", "", "### Prompt", "", _fenced(turn.prompt), ""]
        out += [
            f"Panel: {_line(turn.panel or 'unnamed')} · judge {_line(turn.judge)} · "
            f"writer {_line(turn.writer)} · status {turn.status} · {turn.total_tokens} tokens · "
            f"cost {_cost(turn.cost)}",
            "",
            "### Fused answer",
            "",
            turn.final_answer or "_No fused answer._",
            "",
            "### Analysis",
            "",
        ]
        if turn.analysis:
            out += _analysis_markdown(turn.analysis, names)
        else:
            out += [f"_No analysis{f' ({_line(turn.analysis_error)})' if turn.analysis_error else ''}._", ""]
        for seat in turn.seats:
            demo = " (demo)" if seat.is_demo and "demo" not in seat.label.lower() else ""
            out += [
                f"### Seat {seat.seat}: {_line(seat.label)}{demo}",
                "",
                f"Model `{seat.model.replace('`', '')}` · {seat.status} · "
                f"{seat.prompt_tokens + seat.completion_tokens} tokens · cost {_cost(seat.cost)}",
                "",
            ]
            if seat.error:
                out += [f"Error: {_line(seat.error)}", ""]
            out += [seat.answer or "_No answer._", ""]
        if turn.sources:
            out += ["### Sources", ""]
            out += [f"- {_source_link(source)}" for source in turn.sources]
            out += [""]
    return "\n".join(out).rstrip() + "\n"
