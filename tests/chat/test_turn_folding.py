"""How a turn is rendered folded or open: the columns while the panel answers, the fused answer from the
writer's start on, older turns always folded (the page load and every snapshot alike)."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string

from apps.chat.state import SeatState, TextBuffer, TurnState

pytestmark = pytest.mark.django_db


def turn(status: str, phase: str, *, final: str = "", final_started: bool = False) -> TurnState:
    return TurnState(
        turn_id=3,
        conversation_id=1,
        position=1,
        prompt="Which database?",
        status=status,
        phase=phase,
        seats=[
            SeatState(seat=1, model="demo/atlas", name="Atlas (demo)", is_demo=True, buffer=TextBuffer("a"))
        ],
        judge="demo/judge",
        writer="demo/writer",
        final=TextBuffer(final),
        final_started=final_started,
    )


def panel_open(state: TurnState, *, collapsed: bool = False) -> bool:
    html = render_to_string("chat/_turn.html", {"turn": state, "interactive": True, "collapsed": collapsed})
    found = re.search(r'<details class="panel-answers" id="turn-3-panel"( open)?>', html)
    assert found, html
    assert '<details class="analysis-fold" id="turn-3-analysis-fold">' in html  # the analysis starts folded
    return found[1] is not None


def test_the_columns_are_open_while_the_panel_answers_and_the_judge_compares() -> None:
    assert panel_open(turn("running", "panel"))
    assert panel_open(turn("running", "analysis"))


def test_the_panel_is_folded_from_the_writers_start_on() -> None:
    assert not panel_open(turn("running", "writing", final_started=True))
    assert not panel_open(turn("done", "finished", final="The answer.", final_started=True))


def test_a_turn_stopped_before_any_fused_answer_keeps_its_columns_open_unless_it_is_an_older_one() -> None:
    assert panel_open(turn("cancelled", "panel"))
    assert not panel_open(turn("cancelled", "panel"), collapsed=True)
