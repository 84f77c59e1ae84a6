"""Filters of the Evaluations pages: a score as a percentage, a value from a mapping by key."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """0.647 -> "64.7%"; None -> an en dash."""
    if value is None:
        return "\u2013"
    return f"{value * 100:.1f}%"


@register.filter
def get_item(mapping: dict[Any, Any] | None, key: Any) -> Any:
    return None if mapping is None else mapping.get(key)
