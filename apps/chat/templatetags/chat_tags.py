"""Template helpers of the chatroom's turn templates."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def seat_label(seat: Any, turn: Any) -> str:
    """The name a seat goes by on the page: its model's name, numbered when the model holds several seats
    ("Alpha #1", "Alpha #2"), so two columns of one model can be told apart."""
    labels = getattr(turn, "seat_labels", None)
    if not labels:
        return str(seat.name)
    return str(labels.get(seat.seat, seat.name))
