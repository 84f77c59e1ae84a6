"""What the turn footer needs for its actions: the turn as Markdown (copied), the seats a retry runs."""

from __future__ import annotations

from django import template

from apps.chat.services import RETRY_STATUSES
from apps.chat.state import TurnState
from apps.chat.turn_markdown import turn_markdown as markdown_of

register = template.Library()

_RETRIED = frozenset(RETRY_STATUSES)


@register.filter
def turn_markdown(turn: TurnState) -> str:
    """Plain text: the template escapes it into an inert ``<template>`` the copy button reads."""
    return markdown_of(turn)


@register.filter
def retry_count(turn: TurnState) -> int:
    """How many seats "Retry failed seats" would run again (0: none failed)."""
    return sum(1 for seat in turn.seats if seat.status in _RETRIED)
