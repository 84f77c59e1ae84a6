"""Template context every page gets: the top bar's navigation."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    current: bool


# (label, url name, path it falls back to while that app has no such url yet)
_NAV = (
    ("Chat", "chat:home", "/"),
    ("Panels", "panels:list", "/panels/"),
    ("API keys", "api_keys", "/accounts/keys/"),
)


def _url(name: str, fallback: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return fallback


def navigation(request: HttpRequest) -> dict[str, list[NavItem]]:
    """``nav_items`` for signed-in users; the item whose URL is the longest prefix of the path is current."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    links = [(label, _url(name, fallback)) for label, name, fallback in _NAV]
    matches = [url for _, url in links if request.path.startswith(url)]
    current = max(matches, key=len, default=None)
    return {"nav_items": [NavItem(label=label, url=url, current=url == current) for label, url in links]}
