"""The builder says which web tools each seat will be offered: OpenRouter's search, SearXNG, page fetch
only, or none (demo models, a panel with web tools off)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _labels(client: Client, *models: str, **changes: str) -> list[str]:
    form: dict[str, Any] = {
        "name": "Web",
        "seat_model": list(models),
        "seat_temperature": [""] * len(models),
        "seat_system_prompt": [""] * len(models),
        "judge": "demo/judge",
        "writer": "",
        "web_tools_shown": "1",
        "web_tools": "on",
        **changes,
    }
    html = client.post(reverse("panels:new"), form, headers=HTMX).content.decode()
    return re.findall(r'<span class="seat-web" data-testid="seat-web">([^<]+)</span>', html)


@pytest.fixture
def web(settings: Any) -> Any:
    from apps.providers.catalog import reset_catalog
    from apps.providers.registry import reset_gateway

    settings.OPENROUTER_API_KEY = "sk-or-v1-test"
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1"  # nothing listens: the shipped catalog
    settings.FUSIONROOM_ENDPOINTS = {"ollama": "http://127.0.0.1:9/v1"}
    settings.WEB_SEARCH = "auto"
    settings.WEB_SEARCH_URL = ""
    settings.WEB_FETCH = True
    reset_gateway()
    reset_catalog()
    yield settings
    reset_gateway()
    reset_catalog()


def test_each_seat_says_which_search_it_will_use(alice_client: Client, web: Any) -> None:
    labels = _labels(alice_client, "openai/gpt-4o", "ollama/llama3.2", "demo/atlas")

    assert labels == ["Web: OpenRouter search", "Web: page fetch only", "No web tools (demo)"]


def test_with_a_searxng_service_every_seat_that_takes_tools_uses_it(alice_client: Client, web: Any) -> None:
    web.WEB_SEARCH_URL = "http://127.0.0.1:9"

    assert _labels(alice_client, "openai/gpt-4o", "ollama/llama3.2") == ["Web: SearXNG", "Web: SearXNG"]


def test_a_panel_with_web_tools_off_says_so_on_every_seat(alice_client: Client, web: Any) -> None:
    labels = _labels(alice_client, "openai/gpt-4o", web_tools="")

    assert labels == ["No web tools (off for this panel)"]
