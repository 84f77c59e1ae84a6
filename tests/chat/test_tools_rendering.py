"""How a seat's web tool calls and sources render: escaped, web links only, links that leak nothing."""

from __future__ import annotations

import re

from apps.chat import rendering
from apps.chat.state import SeatState, TurnState
from apps.fusion.schemas import FinalDelta, FinalDone, SeatToolCall, SeatToolResult, Source, Timings
from apps.providers.base import Usage


def state_make() -> TurnState:
    return TurnState(
        turn_id=7,
        conversation_id=3,
        position=1,
        prompt="Which cache?",
        status="running",
        phase="panel",
        seats=[SeatState(seat=1, model="vendor/a", name="Model A", is_demo=False)],
        judge="vendor/judge",
        writer="vendor/writer",
    )


def test_a_tool_call_shows_as_running_then_with_its_result() -> None:
    state = state_make()
    state.apply(SeatToolCall(seat=1, call_id="c1", name="web_search", detail="redis vs memcached"))
    running = rendering.tools_html(state, state.seat(1))
    assert 'id="turn-7-seat-1-tools"' in running and "hidden" not in running.split(">")[0]
    assert 'data-tool-status="running"' in running and "Searching" in running

    state.apply(
        SeatToolResult(
            seat=1,
            call_id="c1",
            name="web_search",
            ok=True,
            detail="2 results",
            sources=[Source(url="https://redis.io/docs/", title="Redis docs")],
        )
    )
    done = rendering.tools_html(state, state.seat(1))
    assert 'data-tool-status="ok"' in done and "Searched" in done and "2 results" in done
    assert "Sources (1)" in done


def test_a_seat_without_tool_calls_renders_an_empty_hidden_placeholder() -> None:
    state = state_make()
    html = rendering.tools_html(state, state.seat(1))
    assert re.search(r'<div class="seat-tools" id="turn-7-seat-1-tools" hidden>', html)
    assert "<li" not in html


def test_sources_are_web_links_only_escaped_and_leak_no_referrer() -> None:
    state = state_make()
    hostile = "<img src=x onerror=alert(1)>"
    state.apply(SeatToolCall(seat=1, call_id="c1", name="web_fetch", detail=hostile))
    state.apply(
        SeatToolResult(
            seat=1,
            call_id="c1",
            name="web_fetch",
            ok=True,
            detail="1,200 characters",
            sources=[
                Source(url="javascript:alert(1)", title="evil"),
                Source(url="data:text/html,<script>alert(1)</script>", title="evil too"),
                Source(url="https://example.org/a?b=1&c=2", title="<script>alert(1)</script>"),
                Source(url="https://example.org/a?b=1&c=2", title="the same page again"),
            ],
        )
    )
    html = rendering.column_html(state, state.seat(1))
    assert "javascript:" not in html and "data:text/html" not in html
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    links = re.findall(r"<a [^>]*>", html)
    assert links == [
        '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank" '
        'title="https://example.org/a?b=1&amp;c=2">'
    ]


def test_a_tool_call_left_running_when_the_turn_stops_is_shown_as_stopped() -> None:
    state = state_make()
    state.apply(SeatToolCall(seat=1, call_id="c1", name="web_fetch", detail="https://slow.example/"))
    state.finish(status="cancelled", reason="cancelled", message="Cancelled")
    html = rendering.tools_html(state, state.seat(1))
    assert 'data-tool-status="stopped"' in html and ">stopped<" in html


def test_the_fused_answer_lists_every_seats_sources_once_when_it_is_done() -> None:
    state = state_make()
    state.seats.append(SeatState(seat=2, model="vendor/b", name="Model B", is_demo=False))
    redis = Source(url="https://redis.io/docs/", title="Redis docs")
    state.seat(1).sources_add([redis])
    state.seat(2).sources_add([redis, Source(url="https://memcached.org/", title="")])
    state.apply(FinalDelta(text="Use Redis.", offset=0))
    assert "Sources the panel used" not in rendering.final_html(state)  # not while the answer streams

    state.apply(FinalDone(content="Use Redis.", usage=Usage(), timings=Timings()))
    state.status = "done"
    html = rendering.final_html(state)
    assert "Sources the panel used (2)" in html
    assert re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html) == [
        ("https://redis.io/docs/", "Redis docs"),
        ("https://memcached.org/", "https://memcached.org/"),
    ]
