"""A turn as Markdown, for the copy button of its footer: the prompt, each seat's answer with its model, the
judge's analysis and the fused answer. Answers are Markdown already and go in as they are."""

from __future__ import annotations

from typing import Any

from apps.chat.state import TurnState


def _item(text: Any) -> str:
    """One list item of plain text on one line."""
    return " ".join(str(text).split())


def _analysis_lines(analysis: dict[str, Any]) -> list[str]:
    sections: list[tuple[str, list[str]]] = [
        ("Consensus", [_item(point) for point in analysis["consensus"]]),
        (
            "Contradictions",
            [
                f"{_item(c['topic'])}: "
                + "; ".join(f"{_item(s['model'])}: {_item(s['stance'])}" for s in c["stances"])
                for c in analysis["contradictions"]
            ],
        ),
        (
            "Partial coverage",
            [f"{_item(p['point'])} ({', '.join(p['models'])})" for p in analysis["partial_coverage"]],
        ),
        (
            "Unique insights",
            [f"{_item(u['model'])}: {_item(u['insight'])}" for u in analysis["unique_insights"]],
        ),
        ("Blind spots", [_item(point) for point in analysis["blind_spots"]]),
    ]
    lines: list[str] = []
    for title, items in sections:
        if items:
            lines += [f"### {title}", "", *(f"- {item}" for item in items), ""]
    return lines or ["_The judge found nothing to report._", ""]


def turn_markdown(state: TurnState) -> str:
    """The whole turn as one Markdown document (what "Copy turn" puts on the clipboard)."""
    labels = state.seat_labels
    lines = ["## Prompt", "", state.prompt, ""]
    for seat in state.seats:
        name = labels.get(seat.seat, seat.name)
        demo = " (demo)" if seat.is_demo and "demo" not in name.lower() else ""
        lines += [f"## {name}{demo} · `{seat.model}`", ""]
        if seat.status == "done":
            lines += [seat.text, ""]
        else:
            why = f": {_item(seat.error)}" if seat.error else ""
            lines += [f"_No answer ({seat.status}{why})._", ""]
            if seat.text:
                lines += ["What arrived before it stopped:", "", seat.text, ""]
    lines += ["## Analysis", ""]
    view = state.analysis_view
    if view:
        lines += _analysis_lines(view)
    elif state.analysis_error:
        lines += [f"_No structured analysis ({state.analysis_error})._", ""]
    else:
        lines += ["_No analysis._", ""]
    lines += ["## Fused answer", "", state.final_text or "_No fused answer._", ""]
    return "\n".join(lines).rstrip() + "\n"
