"""Template context every page gets: the top bar's navigation."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    current: bool


_NAV = (
    ("Chat", "chat:home"),
    ("Panels", "panels:list"),
    ("Evaluations", "evaluation:list"),
    ("API keys", "api_keys"),
)


def navigation(request: HttpRequest) -> dict[str, list[NavItem]]:
    """``nav_items`` for signed-in users; the item whose URL is the longest prefix of the path is current."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    links = [(label, reverse(name)) for label, name in _NAV]
    current = max((url for _, url in links if request.path.startswith(url)), key=len, default=None)
    return {"nav_items": [NavItem(label=label, url=url, current=url == current) for label, url in links]}
