"""Seats of one model are numbered wherever their names show: columns, strip, tabs and the analysis."""

from __future__ import annotations

import pytest

from apps.chat.presentation import seat_labels
from apps.chat.rendering import turn_html
from apps.chat.state import SeatState, TextBuffer, TurnState

pytestmark = pytest.mark.django_db


def turn_with(seats: list[tuple[str, str]], analysis: dict | None = None) -> TurnState:
    return TurnState(
        turn_id=7,
        conversation_id=1,
        position=1,
        prompt="Which database?",
        status="done",
        phase="finished",
        seats=[
            SeatState(seat=n, model=model, name=name, is_demo=False, status="done", buffer=TextBuffer("ok"))
            for n, (model, name) in enumerate(seats, start=1)
        ],
        judge="demo/judge",
        writer="demo/writer",
        panel_name="Twice",
        analysis=analysis,
        final=TextBuffer("The fused answer."),
        final_started=True,
        final_done=True,
    )


def test_a_name_held_by_several_seats_is_numbered_in_seat_order_and_a_single_one_is_not() -> None:
    labels = seat_labels([(1, "Alpha"), (2, "Beta"), (3, "Alpha")])
    assert labels == {1: "Alpha #1", 2: "Beta", 3: "Alpha #2"}


def test_duplicate_seats_are_numbered_in_column_headers_strip_tabs_and_analysis() -> None:
    analysis = {
        "consensus": [],
        "contradictions": [
            {
                "topic": "Speed",
                "stances": [
                    {"model": "fake/alpha #1", "stance": "fast"},
                    {"model": "fake/alpha #3", "stance": "slow"},
                ],
            }
        ],
        "partial_coverage": [],
        "unique_insights": [{"model": "fake/beta", "insight": "cheap"}],
        "blind_spots": [],
    }
    turn = turn_with([("fake/alpha", "Alpha"), ("fake/beta", "Beta"), ("fake/alpha", "Alpha")], analysis)
    html = turn_html(turn)
    assert html.count('<span class="model-name" title="fake/alpha">Alpha #1</span>') == 1
    assert html.count('<span class="model-name" title="fake/alpha">Alpha #2</span>') == 1
    assert '<span class="strip-name">Alpha #2</span>' in html
    assert '<span class="strip-name">Beta</span>' in html
    assert ">Alpha #1</button>" in html  # its tab
    assert '<span class="stance-model">Alpha #1</span>' in html
    assert '<span class="stance-model">Alpha #2</span>' in html
    assert '<span class="by">Beta:</span>' in html
    assert "Alpha</span>" not in html.replace("Alpha #", "")
