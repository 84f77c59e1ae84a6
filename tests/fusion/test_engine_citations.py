"""OpenRouter's server-side web search in the panel: the seat is offered ``openrouter:web_search``, what the
answer cites becomes the seat's sources (shown as a tool line while it streams), reaches the judge and the
writer, and the search's price is in the seat's cost and the run's.

The real provider client against the loopback OpenRouter imitation, and the real toolbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import (
    FusionEvent,
    RunDone,
    SeatDelta,
    SeatDone,
    SeatToolCall,
    SeatToolResult,
    Source,
)
from apps.providers.openai_compat import OpenAICompatClient
from apps.webtools.toolbox import WebToolbox, WebToolsConfig
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.fusion.conftest import FakeGateway, events_collect, fusion_request, of_type

PAGES = [
    {"url": "https://redis.io/docs/", "title": "Redis docs", "content": "An in-memory store."},
    {"url": "https://memcached.org/", "title": "Memcached"},
]
SOURCES = [
    Source(url="https://redis.io/docs/", title="Redis docs"),
    Source(url="https://memcached.org/", title="Memcached"),
]


@pytest.fixture
async def gateway(fake_upstream: FakeUpstream) -> AsyncIterator[FakeGateway]:
    client = OpenAICompatClient(base_url=fake_upstream.base_url, api_key="sk-or-v1-test", backoff_base=0.01)
    fake_upstream.script("vendor/judge", ModelScript(cost=0.0))
    fake_upstream.script("vendor/writer", ModelScript(text="Pick Redis.", cost=0.0))
    yield FakeGateway(client)


def openrouter_toolbox(**config: Any) -> WebToolbox:
    """The installation's tools with every model routed to OpenRouter."""
    return WebToolbox(WebToolsConfig(**config), openrouter=lambda model: True)


async def _run(gateway: FakeGateway, toolbox: WebToolbox, **options: Any) -> list[FusionEvent]:
    request = fusion_request(
        seats=["vendor/searcher", "vendor/plain"], judge="vendor/judge", writer="vendor/writer", **options
    )
    return await events_collect(run_fusion(request, gateway=gateway, toolbox=toolbox))


def _messages_text(upstream: FakeUpstream, model: str) -> str:
    (request,) = upstream.requests_for(model)
    return "\n".join(str(message.get("content") or "") for message in request.body["messages"])


async def test_what_a_seat_cites_is_its_sources_and_reaches_the_judge_and_the_writer(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    fake_upstream.script(
        "vendor/searcher", ModelScript(text="Redis, for most teams.", citations=PAGES, cost=0.002)
    )
    fake_upstream.script("vendor/plain", ModelScript(text="Either works.", cost=0.001))

    events = await _run(gateway, openrouter_toolbox())

    (sent,) = fake_upstream.requests_for("vendor/searcher")
    assert [tool["type"] for tool in sent.body["tools"]] == ["openrouter:web_search", "openrouter:web_fetch"]
    done = {event.seat: event for event in of_type(events, SeatDone)}
    assert done[1].sources == SOURCES and done[1].content == "Redis, for most teams."
    assert done[2].sources == []
    for model in ("vendor/judge", "vendor/writer"):
        prompt = _messages_text(fake_upstream, model)
        assert "https://redis.io/docs/" in prompt and "https://memcached.org/" in prompt


async def test_the_citations_show_as_a_tool_line_while_the_seat_still_streams(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    fake_upstream.script(
        "vendor/searcher",
        ModelScript(text="one two three four", citations=PAGES, citations_after=0, searches=2),
    )

    events = await _run(gateway, openrouter_toolbox())

    seat_one = [event for event in events if getattr(event, "seat", None) == 1]
    kinds = [event.type for event in seat_one]
    first_result = kinds.index("seat.tool_result")
    assert (
        kinds.index("seat.tool_call")
        < first_result
        < max(index for index, kind in enumerate(kinds) if kind == "seat.delta")
    )
    (call,) = of_type(seat_one, SeatToolCall)
    assert call.name == "openrouter:web_search"
    results = of_type(seat_one, SeatToolResult)
    assert results[0].sources == SOURCES and results[0].detail == "2 pages cited"
    # At the end of the call, the line says what the usage counted.
    assert results[-1].detail == "2 searches, 2 pages cited" and results[-1].call_id == call.call_id
    assert "".join(event.text for event in of_type(seat_one, SeatDelta)) == "one two three four"


async def test_the_search_price_is_in_the_seat_cost_and_the_run_total(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    fake_upstream.script(
        "vendor/searcher", ModelScript(text="Redis.", citations=PAGES, searches=3, cost=0.01)
    )
    fake_upstream.script("vendor/plain", ModelScript(text="Either.", cost=0.01))

    events = await _run(gateway, openrouter_toolbox())

    done = {event.seat: event for event in of_type(events, SeatDone)}
    assert done[1].usage.cost == pytest.approx(0.01 + 3 * 0.005)
    assert done[1].usage.web_search_requests == 3
    (run,) = of_type(events, RunDone)
    assert run.totals.usage.cost == pytest.approx(0.02 + 3 * 0.005)
    assert run.totals.usage.web_search_requests == 3


async def test_with_a_searxng_service_set_the_seat_gets_our_tools_and_no_server_tool(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    fake_upstream.script("vendor/searcher", ModelScript(text="Redis.", citations=PAGES))

    events = await _run(gateway, openrouter_toolbox(search_url="http://127.0.0.1:9"))

    (sent,) = fake_upstream.requests_for("vendor/searcher")
    assert [tool["function"]["name"] for tool in sent.body["tools"]] == ["web_search", "web_fetch"]
    assert of_type(events, SeatToolResult) == []
    assert all(event.sources == [] for event in of_type(events, SeatDone))


async def test_a_panel_with_web_tools_off_offers_no_server_tool(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    fake_upstream.script("vendor/searcher", ModelScript(text="Redis.", citations=PAGES))

    await _run(gateway, openrouter_toolbox(), web_tools=False)

    (sent,) = fake_upstream.requests_for("vendor/searcher")
    assert "tools" not in sent.body


async def test_a_tool_call_in_a_reply_offered_only_server_tools_is_not_ours_to_run(
    fake_upstream: FakeUpstream, gateway: FakeGateway
) -> None:
    # Had the provider echoed its own search as a call, running it here would ask the model a second time.
    fake_upstream.script(
        "vendor/searcher",
        ModelScript(
            text="Redis.",
            citations=PAGES,
            tool_calls=[{"name": "web_search", "arguments": {"query": "cache"}}],
            finish_reason="stop",
        ),
    )

    events = await _run(gateway, openrouter_toolbox())

    assert len(fake_upstream.requests_for("vendor/searcher")) == 1
    done = {event.seat: event for event in of_type(events, SeatDone)}
    assert done[1].sources == SOURCES
