"""Which search a seat is offered (the ``WEB_SEARCH`` rule): the request's tools, and the builder's words."""

from __future__ import annotations

from typing import Any

import pytest

from apps.webtools.toolbox import (
    OPENROUTER_WEB_FETCH,
    OPENROUTER_WEB_SEARCH,
    SearchChoice,
    WebToolbox,
    WebToolsConfig,
    search_choice,
    seat_web_label,
)

SEARXNG = "http://127.0.0.1:9"


def _kinds(tools: list[dict[str, Any]]) -> list[str]:
    return [tool["function"]["name"] if tool["type"] == "function" else tool["type"] for tool in tools]


def _offered(
    choice: SearchChoice, *, openrouter: bool, search_url: str = "", fetch: bool = True
) -> list[str]:
    config = WebToolsConfig(search=choice, search_url=search_url, fetch=fetch)
    box = WebToolbox(config, openrouter=lambda model: openrouter)
    return _kinds(box.definitions("vendor/model", max_calls=4))


@pytest.mark.parametrize(
    ("choice", "search_url", "openrouter", "offered"),
    [
        # auto: SearXNG wherever it is set, else OpenRouter's tools for OpenRouter's models only.
        ("auto", "", True, [OPENROUTER_WEB_SEARCH, OPENROUTER_WEB_FETCH]),
        ("auto", "", False, ["web_fetch"]),
        ("auto", SEARXNG, True, ["web_search", "web_fetch"]),
        ("auto", SEARXNG, False, ["web_search", "web_fetch"]),
        # openrouter: OpenRouter's tools for its models even with SearXNG set; SearXNG for the rest.
        ("openrouter", SEARXNG, True, [OPENROUTER_WEB_SEARCH, OPENROUTER_WEB_FETCH]),
        ("openrouter", SEARXNG, False, ["web_search", "web_fetch"]),
        ("searxng", SEARXNG, True, ["web_search", "web_fetch"]),
        # off: no search for anyone; our page fetch stays.
        ("off", SEARXNG, True, ["web_fetch"]),
        ("off", "", False, ["web_fetch"]),
    ],
)
def test_each_setting_offers_each_route_its_search(
    choice: SearchChoice, search_url: str, openrouter: bool, offered: list[str]
) -> None:
    assert _offered(choice, openrouter=openrouter, search_url=search_url) == offered


def test_without_page_fetch_an_openrouter_seat_gets_only_the_search_and_others_nothing() -> None:
    assert _offered("auto", openrouter=True, fetch=False) == [OPENROUTER_WEB_SEARCH]
    assert _offered("auto", openrouter=False, fetch=False) == []


def test_the_server_tools_are_bounded_by_the_seats_budget_of_tool_calls() -> None:
    box = WebToolbox(WebToolsConfig(search_results=5), openrouter=lambda model: True)

    search, fetch = box.definitions("vendor/model", max_calls=3)

    assert search == {
        "type": "openrouter:web_search",
        "parameters": {"max_results": 5, "max_total_results": 15},
    }
    assert fetch == {"type": "openrouter:web_fetch", "parameters": {"max_uses": 3}}


def test_an_unknown_setting_is_refused() -> None:
    assert search_choice("openrouter") == "openrouter"
    with pytest.raises(ValueError, match="WEB_SEARCH"):
        search_choice("google")


def test_the_builder_label_follows_the_route_and_the_settings(settings: Any) -> None:
    from apps.providers.registry import reset_gateway

    settings.OPENROUTER_API_KEY = "sk-or-v1-test"
    settings.FUSIONROOM_ENDPOINTS = {"ollama": "http://127.0.0.1:11434/v1"}
    settings.WEB_FETCH = True
    settings.WEB_SEARCH = "auto"
    settings.WEB_SEARCH_URL = ""
    reset_gateway()
    try:
        assert seat_web_label("vendor/model") == "Web: OpenRouter search"
        assert seat_web_label("ollama/llama3.2") == "Web: page fetch only"
        assert seat_web_label("demo/atlas") == "No web tools (demo)"
        assert seat_web_label("vendor/model", web_tools=False) == "No web tools (off for this panel)"
        settings.WEB_SEARCH_URL = SEARXNG
        assert seat_web_label("vendor/model") == "Web: SearXNG"
        settings.WEB_SEARCH = "off"
        settings.WEB_FETCH = False
        assert seat_web_label("vendor/model") == "No web tools"
    finally:
        reset_gateway()
