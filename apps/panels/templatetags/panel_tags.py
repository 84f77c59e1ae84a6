"""Template pieces the chatroom borrows from the panels app: the composer's cost estimate slot, the
"actual vs writer alone" cost line of a finished turn, and USD formatting.

``{% load panel_tags %}``, then ``{% cost_estimate_slot conversation %}`` inside the composer form,
and ``{% turn_cost_line turn %}`` in a turn's footer.
"""

from __future__ import annotations

from typing import Any

from django import template

from apps.panels.costs import (
    history_chars_before,
    turn_cost_comparison,
)
from apps.panels.presenters import estimate_context

register = template.Library()


@register.filter
def usd(value: float | None) -> str:
    """``$1.23``, ``$0.042``, ``$0.0012``; "unknown" for None; tiny non-zero amounts are not shown as $0."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0"
    if value < 0.0001:
        return "less than $0.0001"
    if value < 0.01:
        return f"${value:.4f}"
    if value < 1:
        return f"${value:.3f}"
    return f"${value:,.2f}"


@register.filter
def usd_about(value: float | None) -> str:
    """An estimate in words: "about $0.0012", "less than $0.0001", "$0"; "unknown" for None."""
    if value is None or value == 0:
        return usd(value)
    return usd(value) if value < 0.0001 else f"about {usd(value)}"


@register.inclusion_tag("panels/_estimate_slot.html", takes_context=True)
def cost_estimate_slot(context: template.Context, conversation: Any = None) -> dict[str, Any]:
    """The composer's estimate, for the panel selected in ``panel_choices`` (items with ``panel`` and
    ``selected``) and the ``prompt`` in the context; htmx refreshes it when ``#panel-select`` changes and
    while ``#prompt`` is typed.

    Place it inside the composer form; it posts that form (panel and prompt fields) to ``panels:estimate``.
    Renders in sync code only: it reads the conversation's turns for the history length.
    """
    history = 0
    if conversation is not None and getattr(conversation, "pk", None):
        history = history_chars_before(conversation.turns.filter(shown=True))
    selected = next(
        (choice.panel for choice in context.get("panel_choices") or [] if getattr(choice, "selected", False)),
        None,
    )
    prompt = context.get("prompt") or ""
    return {
        "history_chars": history,
        **estimate_context(
            panel=selected, prompt_chars=len(str(prompt)), history_chars=history, user=context.get("user")
        ),
    }


@register.inclusion_tag("panels/_turn_cost.html")
def turn_cost_line(turn: Any, history_chars: int | None = None) -> dict[str, Any]:
    """ "This run cost $X; the writer alone would have cost about $Y" for a finished turn (nothing while it
    runs). ``turn`` is a ``chat.Turn`` or the chatroom's turn state."""
    if getattr(turn, "status", "") == "running" or getattr(turn, "running", False):
        return {"show": False}
    comparison = turn_cost_comparison(turn=turn, history_chars=history_chars)
    writer = str((getattr(turn, "panel_snapshot", None) or {}).get("writer") or getattr(turn, "writer", ""))
    return {"show": True, "comparison": comparison, "writer": writer}
