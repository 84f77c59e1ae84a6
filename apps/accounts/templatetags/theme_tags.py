"""``{% current_theme as theme %}``: the theme the page renders in (apps/accounts/theme.py)."""

from __future__ import annotations

from django import template

from apps.accounts.theme import theme_for

register = template.Library()


@register.simple_tag(takes_context=True)
def current_theme(context: template.Context) -> str:
    request = context.get("request")
    return theme_for(request) if request is not None else "system"
