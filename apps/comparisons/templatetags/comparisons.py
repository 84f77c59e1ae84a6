"""Template pieces other pages borrow from the comparisons app.

``{% load comparisons %}``, then

- ``{% comparison_option %}`` inside the chatroom composer: the "compare with a single model" control for the
  panel selected in ``panel_choices``;
- ``{% turn_comparison turn interactive %}`` in a turn: its blind comparison block (or an empty slot);
- ``{% panel_win_rates as rates %}``: the signed-in user's win rates (``selectors.win_rates_for``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from weakref import WeakKeyDictionary

from django import template
from django.http import HttpRequest

from apps.comparisons import presenters, selectors

register = template.Library()

# One query per conversation page: every comparison of the conversation, read by the page's first turn and
# kept as long as its request lives (a template's own render context does not outlive one include).
_PAGE_COMPARISONS: WeakKeyDictionary[HttpRequest, dict[int, dict[int, Any]]] = WeakKeyDictionary()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@register.inclusion_tag("comparisons/_option.html", takes_context=True)
def comparison_option(context: template.Context) -> dict[str, Any]:
    """Renders in sync code only (it reads the user's saved option)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    selected = next(
        (choice.panel for choice in context.get("panel_choices") or [] if getattr(choice, "selected", False)),
        None,
    )
    if user is None or not user.is_authenticated:
        return {"panel": None}
    return presenters.option_context(user=user, panel=selected)


@register.inclusion_tag("comparisons/_block.html", takes_context=True)
def turn_comparison(context: template.Context, turn: Any, interactive: bool = False) -> dict[str, Any]:
    """The block of ``turn`` (the chatroom's ``TurnState``).

    The run recorder renders turns on the server's event loop, where the ORM may not be called: there a
    finished turn gets a slot that loads its block over HTTP (``lazy``), a running one an empty slot (the
    turn's last snapshot replaces it). Pages render in sync code and read every comparison of the
    conversation in one query, kept for the rest of the page.
    """
    turn_id = int(turn.turn_id)
    if turn.running:
        return {"turn_id": turn_id, "state": "none"}
    if _on_event_loop():
        return {"turn_id": turn_id, "state": "lazy"}
    request = context.get("request")
    conversation_id = int(turn.conversation_id)
    if isinstance(request, HttpRequest):
        cache = _PAGE_COMPARISONS.setdefault(request, {})
        if conversation_id not in cache:
            cache[conversation_id] = selectors.comparisons_by_turn(conversation_id=conversation_id)
        comparison = cache[conversation_id].get(turn_id)
    else:
        comparison = selectors.comparisons_by_turn(conversation_id=conversation_id).get(turn_id)
    return presenters.block_context(comparison=comparison, turn_id=turn_id, interactive=bool(interactive))


@register.simple_tag(takes_context=True)
def panel_win_rates(context: template.Context) -> list[selectors.PanelWinRate]:
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if user is None:
        return []
    return selectors.win_rates_for(user=user)


@register.filter
def percent(value: float) -> str:
    return f"{value * 100:.0f}%"
