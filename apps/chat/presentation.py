"""How a turn reads on the page: figures formatted, models labelled, and what the templates read of a turn
beyond its fields.

``SeatView`` and ``TurnView`` are the bases of ``state.SeatState`` and ``state.TurnState``: the state module
says what a turn is and how events change it, this one how it is shown. Nothing here changes a state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.functional import cached_property
from django.utils.safestring import SafeString

from apps.core.markdown import render_markdown

if TYPE_CHECKING:
    from apps.chat.state import SeatState, TextBuffer

RUNNING = "running"


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


def seat_label(model: str) -> tuple[str, bool]:
    """A model's display name and whether it is a demo model (from the cached catalog: no network wait)."""
    from apps.providers.registry import gateway_from_settings

    gateway = gateway_from_settings()
    info = gateway.model_info(model)
    is_demo = gateway.is_demo(model) or bool(info and info.is_demo)
    return (info.name if info and info.name else model), is_demo


def seat_labels(seats: list[tuple[int, str]]) -> dict[int, str]:
    """``(seat, name)`` pairs to labels: a name held by several seats gets ``#1``, ``#2``… in seat order."""
    totals: dict[str, int] = {}
    for _, name in seats:
        totals[name] = totals.get(name, 0) + 1
    seen: dict[str, int] = {}
    labels: dict[int, str] = {}
    for seat, name in sorted(seats):
        if totals[name] == 1:
            labels[seat] = name
        else:
            seen[name] = seen.get(name, 0) + 1
            labels[seat] = f"{name} #{seen[name]}"
    return labels


def _markdown(text: str, cached: tuple[str, SafeString] | None) -> tuple[str, SafeString]:
    """``text`` rendered, reusing ``cached`` while the text is the same string (a buffer hands out the same
    object until it changes, so the check costs nothing)."""
    if cached is not None and cached[0] is text:
        return cached
    return text, render_markdown(text)


class SeatView:
    """What the templates read of a seat besides its fields."""

    # Fields of ``SeatState``.
    buffer: TextBuffer
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    ttft_ms: float | None
    duration_ms: float | None
    _html: tuple[str, SafeString] | None = None

    @property
    def html(self) -> SafeString:
        """The answer as sanitised Markdown (rendered again only when the text changed)."""
        self._html = _markdown(self.buffer.text, self._html)
        return self._html[1]

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


class TurnView:
    """What the templates read of a turn besides its fields."""

    # Fields of ``TurnState``.
    status: str
    phase: str
    seats: list[SeatState]
    final: TextBuffer
    final_done: bool
    totals: dict[str, Any]
    cost: float | None
    analysis: dict[str, Any] | None
    _final_html: tuple[str, SafeString] | None = None

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def final_text(self) -> str:
        return self.final.text

    @property
    def final_html(self) -> SafeString:
        self._final_html = _markdown(self.final.text, self._final_html)
        return self._final_html[1]

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
        if self.status in ("done", "cancelled", "interrupted"):
            return self.status
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

    @property
    def seat_labels(self) -> dict[int, str]:
        """Each seat's name on the page, by seat number: a model that holds several seats is numbered in seat
        order ("Alpha #1", "Alpha #2"), in the column headers, the panel strip and the analysis alike."""
        return seat_labels([(seat.seat, seat.name) for seat in self.seats])

    @cached_property
    def model_names(self) -> dict[str, str]:
        """The analysis's model references mapped to seat labels: the judge names a model that holds several
        seats ``<model> #<seat>`` (apps/fusion/prompts.py), any other by its id."""
        labels = self.seat_labels
        counts: dict[str, int] = {}
        for seat in self.seats:
            counts[seat.model] = counts.get(seat.model, 0) + 1
        names: dict[str, str] = {}
        for seat in self.seats:
            label = labels.get(seat.seat, seat.name)
            if counts[seat.model] == 1:
                names[seat.model] = label
            else:
                names[f"{seat.model} #{seat.seat}"] = label
                # The bare id of a shared model is ambiguous: it names the model, not one of its seats.
                names.setdefault(seat.model, seat.name)
        return names

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
