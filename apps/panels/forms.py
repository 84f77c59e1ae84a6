"""The builder's form state: what the person typed, as strings, and the edits its buttons make.

The builder keeps no server-side draft: every htmx request posts the whole form, the view rebuilds a
``BuilderInput`` from it, applies the one action the pressed button names, and renders the result. Typing is
never lost, even when it is not valid yet; ``apps.panels.services.panel_save`` validates on save.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from apps.fusion.schemas import MAX_SEATS

if TYPE_CHECKING:
    from django.http import QueryDict

    from apps.panels.models import Panel

OPTION_NAMES = ("temperature", "deadline_s", "quorum", "max_tool_calls", "max_completion_tokens")
# Bounds on what one form post may carry, so a hand-made request cannot make the server build huge pages.
MAX_FIELD_CHARS = 8000
MAX_POSTED_SEATS = MAX_SEATS + 1

SeatMove = Literal["up", "down", "remove"]


@dataclass(frozen=True)
class SeatInput:
    model: str
    temperature: str = ""
    system_prompt: str = ""


@dataclass(frozen=True)
class BuilderInput:
    name: str = ""
    seats: tuple[SeatInput, ...] = ()
    judge: str = ""
    writer: str = ""
    options: dict[str, str] = field(default_factory=dict)
    # Offer panel models the server's web tools (a checkbox; on unless the person turned it off).
    web_tools: bool = True

    def option(self, name: str) -> str:
        return self.options.get(name, "")


@dataclass(frozen=True)
class BuilderAction:
    """What the pressed button asked for. ``kind`` "save" is the default (Enter, or the Save button)."""

    kind: Literal["save", "add", "judge", "writer", "up", "down", "remove"]
    model: str = ""
    seat: int = 0  # 1-based


def _clip(value: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    return (value or "").strip()[:limit]


def builder_input_from_post(data: QueryDict) -> BuilderInput:
    models = data.getlist("seat_model")[:MAX_POSTED_SEATS]
    temperatures = data.getlist("seat_temperature")
    prompts = data.getlist("seat_system_prompt")
    seats = tuple(
        SeatInput(
            model=_clip(model, 200),
            temperature=_clip(temperatures[index] if index < len(temperatures) else "", 20),
            system_prompt=_clip(prompts[index] if index < len(prompts) else ""),
        )
        for index, model in enumerate(models)
        if _clip(model, 200)
    )
    return BuilderInput(
        name=_clip(data.get("name"), 200),
        seats=seats,
        judge=_clip(data.get("judge"), 200),
        writer=_clip(data.get("writer"), 200),
        options={name: _clip(data.get(name), 20) for name in OPTION_NAMES},
        # An unticked checkbox is not posted: the hidden marker tells "unticked" from "not on this form".
        web_tools=bool(data.get("web_tools")) or not data.get("web_tools_shown"),
    )


def builder_input_from_panel(panel: Panel, *, name: str | None = None) -> BuilderInput:
    options = panel.options if isinstance(panel.options, dict) else {}
    return BuilderInput(
        name=panel.name if name is None else name,
        seats=tuple(
            SeatInput(
                model=member.model_id,
                temperature="" if member.temperature is None else f"{member.temperature:g}",
                system_prompt=member.system_prompt,
            )
            for member in panel.members.all()
        ),
        judge=panel.judge_model,
        writer="" if panel.writer_model == panel.judge_model else panel.writer_model,
        options={name: _number_text(options.get(name)) for name in OPTION_NAMES},
        web_tools=options.get("web_tools") is not False,
    )


def _number_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return str(value) if isinstance(value, int) else f"{value:g}"


def builder_action_from_post(data: QueryDict) -> BuilderAction:
    if model := _clip(data.get("add_model"), 200):
        return BuilderAction(kind="add", model=model)
    if model := _clip(data.get("set_judge"), 200):
        return BuilderAction(kind="judge", model=model)
    if model := _clip(data.get("set_writer"), 200):
        return BuilderAction(kind="writer", model=model)
    move, _, seat = (data.get("seat_action") or "").partition(":")
    if move in ("up", "down", "remove") and seat.isdigit():
        return BuilderAction(kind=move, seat=int(seat))  # type: ignore[arg-type]
    return BuilderAction(kind="save")


def builder_apply(data: BuilderInput, action: BuilderAction) -> tuple[BuilderInput, str]:
    """``data`` with the action applied, and one sentence saying what happened (for a screen reader)."""
    seats = list(data.seats)
    index = action.seat - 1
    if action.kind == "add":
        if len(seats) >= MAX_SEATS:
            return data, f"A panel has at most {MAX_SEATS} seats: remove one first."
        seats.append(SeatInput(model=action.model))
        return replace(data, seats=tuple(seats)), f"Added {action.model} as seat {len(seats)}."
    if action.kind == "judge":
        return replace(data, judge=action.model), f"{action.model} is the judge."
    if action.kind == "writer":
        return replace(data, writer=action.model), f"{action.model} is the writer."
    if not 0 <= index < len(seats):
        return data, "That seat is no longer there."
    if action.kind == "remove":
        removed = seats.pop(index)
        return replace(data, seats=tuple(seats)), f"Removed seat {action.seat} ({removed.model})."
    target = index - 1 if action.kind == "up" else index + 1
    if not 0 <= target < len(seats):
        return data, f"Seat {action.seat} is already {'first' if action.kind == 'up' else 'last'}."
    seats[index], seats[target] = seats[target], seats[index]
    return replace(data, seats=tuple(seats)), f"Moved {seats[target].model} to seat {target + 1}."


def builder_focus_after(data: BuilderInput, action: BuilderAction) -> str:
    """The id of the control that should have focus after ``action`` re-renders the seats ("" for none).

    Moving keeps focus on the same button of the moved seat (so pressing it again keeps moving it), falling
    back to the other direction at either end; removing moves focus to the seat that took its place.
    """
    count = len(data.seats)
    if action.kind in ("up", "down"):
        position = action.seat - 1 if action.kind == "up" else action.seat + 1
        position = min(max(position, 1), count)
        direction = action.kind
        if (direction == "up" and position == 1) or (direction == "down" and position == count):
            direction = "down" if direction == "up" else "up"
        if count == 1:
            return f"seat-{position}-remove"
        return f"seat-{position}-{direction}"
    if action.kind == "remove":
        if count == 0:
            return "seats-heading"
        return f"seat-{min(action.seat, count)}-remove"
    return ""
