"""With only an OpenRouter key, a panel model searches the web on OpenRouter's side: the pages its answer
cites show in its column while it streams and after a reload, reach the judge and the writer, and the
search's price is in the turn's cost."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.chat.models import PanelAnswer
from apps.panels.models import Panel, PanelMember
from tests.chat.conftest import Room, session_cookie, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    {"url": "https://redis.io/docs/", "title": "Redis docs", "content": "An in-memory store."},
    {"url": "https://memcached.org/", "title": "Memcached"},
]
# Cites the pages after its first content chunk.
SEARCHER = ModelScript(
    text="Redis suits most small teams.",
    citations=PAGES,
    citations_after=0,
    searches=1,
    cost=0.002,
    comments=False,
)


@pytest.fixture
def openrouter(settings: Any, fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """OpenRouter is the loopback imitation; no search service, no endpoints: the OpenRouter key alone."""
    from apps.providers.catalog import reset_catalog

    settings.OPENROUTER_API_KEY = "sk-or-v1-test"
    settings.OPENROUTER_BASE_URL = fake_upstream.base_url
    settings.FUSIONROOM_ENDPOINTS = {}
    settings.WEB_SEARCH = "auto"
    settings.WEB_SEARCH_URL = ""
    settings.WEB_FETCH = True
    settings.PROVIDER_MAX_RETRIES = 0
    fake_upstream.models = [
        {"id": model, "name": model, "supported_parameters": ["tools", "max_tokens"]}
        for model in ("vendor/searcher", "vendor/judge", "vendor/writer")
    ]
    reset_catalog()
    fake_upstream.script("vendor/searcher", SEARCHER)
    fake_upstream.script("vendor/judge", ModelScript(cost=0.001, comments=False))
    fake_upstream.script("vendor/writer", ModelScript(text="Pick Redis.", cost=0.001, comments=False))
    yield fake_upstream
    reset_catalog()


def _panel(owner: Any) -> Panel:
    panel = Panel.objects.create(
        owner=owner,
        name="Searchers",
        slug="searchers",
        judge_model="vendor/judge",
        writer_model="vendor/writer",
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="vendor/searcher")
    return panel


def _cites(fragment: str) -> bool:
    return 'data-tool="openrouter:web_search"' in fragment and "https://redis.io/docs/" in fragment


async def test_a_panel_model_searches_on_openrouter_and_its_column_shows_the_cited_pages(
    room: Room, openrouter: FakeUpstream
) -> None:
    # The answer waits for the test before its first words (so the turn's first snapshot cannot show the
    # pages yet), and again after them, past the citations (so the pages must show while it streams).
    go, release = threading.Event(), threading.Event()
    openrouter.script("vendor/searcher", dataclasses.replace(SEARCHER, holds={0: go, 1: release}))
    panel = await sync_to_async(_panel)(room.user)
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Which cache should a small team pick?", "panel": panel.pk})
    started = await socket.receive_until(lambda frame: frame["type"] == "snapshot")
    assert started["status"] == "running" and not _cites(started["html"])
    go.set()

    shown = await socket.receive_until(
        lambda frame: frame["type"] in ("html", "snapshot") and _cites(frame.get("html", ""))
    )
    assert shown["status"] == "running", "shown live, while the answer streams"
    assert "-seat-1-tools" in shown["html"] and "Memcached" in shown["html"]
    release.set()
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert ended["status"] == "done"
    (seat_request,) = openrouter.requests_for("vendor/searcher")
    assert [tool["type"] for tool in seat_request.body["tools"]] == [
        "openrouter:web_search",
        "openrouter:web_fetch",
    ]
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=ended["turn"], seat=1)
    assert [source["url"] for source in answer.sources] == [
        "https://redis.io/docs/",
        "https://memcached.org/",
    ]
    assert [(call["name"], call["status"]) for call in answer.tool_calls] == [("openrouter:web_search", "ok")]
    assert answer.cost == pytest.approx(0.002 + 0.005)
    turn = await room.turn(ended["turn"])
    assert turn.cost == pytest.approx(0.002 + 0.005 + 0.001 + 0.001)
    for model in ("vendor/judge", "vendor/writer"):
        (request,) = openrouter.requests_for(model)
        prompt = "\n".join(str(message.get("content") or "") for message in request.body["messages"])
        assert "https://redis.io/docs/" in prompt and "https://memcached.org/" in prompt

    def page() -> str:
        client = Client()
        client.cookies["sessionid"] = session_cookie(room.user).split("=", 1)[1]
        return client.get(f"/c/{room.conversation.pk}/").content.decode()

    html = await sync_to_async(page)()
    assert _cites(html) and "Searched on OpenRouter" in html
