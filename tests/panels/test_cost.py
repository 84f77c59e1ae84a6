"""The cost estimate before a run and the "actual vs writer alone" line after it, with exact numbers.

Prices come from a live catalog served by the loopback fake OpenRouter (``GET /models``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template
from django.test import Client
from django.urls import reverse

from apps.chat.models import Conversation, Turn
from apps.panels.costs import (
    CostComparison,
    panel_estimate_cost,
    turn_cost_comparison,
    unpriced_models,
)
from apps.panels.models import Panel, PanelMember
from tests.fakes.upstream import FakeUpstream
from tests.panels.conftest import openrouter_model

pytestmark = pytest.mark.django_db

PRICED = [
    openrouter_model("test/seat-a", prompt="0.000001", completion="0.000002"),
    openrouter_model("test/seat-b", prompt="0.000003", completion="0.000004"),
    openrouter_model("test/judge", prompt="0.000005", completion="0.00001"),
    openrouter_model("test/unpriced", prompt=None, completion=None),
]
SNAPSHOT: dict[str, Any] = {
    "seats": [
        {"seat": 1, "model": "test/seat-a", "temperature": None, "system_prompt": "x" * 40},
        {"seat": 2, "model": "test/seat-b", "temperature": None, "system_prompt": None},
    ],
    "judge": "test/judge",
    "writer": "test/judge",
    "options": {"max_completion_tokens": 1000},
}


@pytest.fixture
def priced(live_openrouter: FakeUpstream) -> FakeUpstream:
    live_openrouter.models = PRICED
    return live_openrouter


def test_the_estimate_adds_up_every_seat_the_judge_and_the_writer(priced: FakeUpstream) -> None:
    # 799 characters of prompt and history are 200 tokens; seat A's system prompt adds 10.
    # Typical, with no runs of these models yet (answers and analysis of 400 tokens):
    #   seat A 210 in, 400 out: 0.00021 + 0.0008 = 0.00101; seat B 200 in, 400 out: 0.0006 + 0.0016 = 0.0022
    #   judge 200 + 800 answers + 600 instructions = 1600 in, 400 out: 0.008 + 0.004 = 0.012
    #   writer 200 + 800 + 400 analysis + 300 instructions = 1700 in, 400 out: 0.0085 + 0.004 = 0.0125
    # High (every call writes max_completion_tokens = 1000):
    #   seat A 0.00021 + 0.002; seat B 0.0006 + 0.004
    #   judge 2800 in: 0.014 + 0.01; writer 3500 in: 0.0175 + 0.01
    # Low (answers of 20 tokens, an analysis of 50, every input counted half):
    #   seat A 105 in, 20 out: 0.000105 + 0.00004; seat B 100 in: 0.0003 + 0.00008
    #   judge (200 + 40 + 600) / 2 = 420 in, 50 out: 0.0021 + 0.0005
    #   writer (200 + 40 + 50 + 300) / 2 = 295 in, 20 out: 0.001475 + 0.0002
    estimate = panel_estimate_cost(snapshot_or_panel=SNAPSHOT, prompt_chars=400, history_chars=399)
    assert estimate is not None
    assert estimate.typical == pytest.approx(0.02771)
    assert estimate.high == pytest.approx(0.05831)
    assert estimate.low == pytest.approx(0.0048)
    assert not estimate.from_history


def test_a_short_token_limit_caps_the_low_estimate_too(priced: FakeUpstream) -> None:
    snapshot = {**SNAPSHOT, "options": {"max_completion_tokens": 100}}
    estimate = panel_estimate_cost(snapshot_or_panel=snapshot, prompt_chars=0, history_chars=0)
    # Every output is 100 tokens but for the low end, so typical == high:
    # seats 10 in + 100 out (A) and 0 in + 100 out (B); judge 200 + 600 in; writer 200 + 100 + 300 in.
    expected = (10e-6 + 200e-6) + (400e-6) + (800 * 5e-6 + 100e-5) + (600 * 5e-6 + 100e-5)
    assert estimate is not None
    assert estimate.typical == pytest.approx(expected) and estimate.high == pytest.approx(expected)
    assert estimate.low < expected


def test_an_unknown_price_makes_the_estimate_unknown_and_says_which(priced: FakeUpstream) -> None:
    snapshot = {**SNAPSHOT, "writer": "test/unpriced"}
    assert panel_estimate_cost(snapshot_or_panel=snapshot, prompt_chars=10, history_chars=0) is None
    assert unpriced_models(snapshot_or_panel=snapshot) == ["test/unpriced"]


def test_demo_panels_cost_nothing() -> None:
    demo = Panel.objects.get(owner=None, slug="demo")
    estimate = panel_estimate_cost(snapshot_or_panel=demo, prompt_chars=5000, history_chars=20000)
    assert estimate == (0.0, 0.0, 0.0, False)


def test_the_estimate_endpoint_renders_the_range_for_the_composer(
    priced: FakeUpstream, alice: Any, alice_client: Client
) -> None:
    panel = Panel.objects.create(
        owner=alice,
        name="Priced",
        slug="priced",
        judge_model="test/judge",
        writer_model="test/judge",
        options={"max_completion_tokens": 1000},
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="test/seat-a", system_prompt="x" * 40)
    PanelMember.objects.create(panel=panel, position=2, model_id="test/seat-b")
    response = alice_client.post(
        reverse("panels:estimate"), {"panel": panel.pk, "prompt": "p" * 400, "history_chars": "399"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert '<strong data-testid="estimate-typical">about $0.028</strong>' in html
    assert '<span data-testid="estimate-high">at most $0.058</span>' in html
    assert "typical: answers of usual length; range $0.0048 to $0.058" in html
    assert "2 seats, judge and writer" in html


def test_the_estimate_endpoint_says_unknown_plainly(
    live_openrouter: FakeUpstream, alice_client: Client
) -> None:
    live_openrouter.models = [
        *PRICED,
        openrouter_model("~anthropic/claude-opus-latest", prompt=None, completion=None),
    ]
    quality = Panel.objects.get(owner=None, slug="quality")
    html = alice_client.post(
        reverse("panels:estimate"), {"panel": quality.pk, "prompt": "hi"}
    ).content.decode()
    assert "Estimated cost: unknown, the catalog has no price for ~anthropic/claude-opus-latest" in html


def test_the_estimate_endpoint_says_what_to_set_without_a_key(alice_client: Client) -> None:
    budget = Panel.objects.get(owner=None, slug="budget")
    html = alice_client.post(
        reverse("panels:estimate"), {"panel": budget.pk, "prompt": "hi"}
    ).content.decode()
    assert 'data-testid="estimate-blocked"' in html and "set OPENROUTER_API_KEY" in html


def _turn(owner: Any, *, cost: float | None) -> Turn:
    conversation = Conversation.objects.create(owner=owner, title="t")
    Turn.objects.create(
        conversation=conversation, position=1, prompt="q" * 100, final_text="a" * 300, status="done"
    )
    return Turn.objects.create(
        conversation=conversation,
        position=2,
        prompt="q" * 400,
        panel_snapshot=SNAPSHOT,
        status="done",
        final_text="answer",
        cost=cost,
        totals={"steps": [{"role": "writer", "model": "test/judge", "usage": {"completion_tokens": 300}}]},
    )


def test_a_turn_compares_its_cost_with_the_writer_alone(priced: FakeUpstream, alice: Any) -> None:
    turn = _turn(alice, cost=0.05)
    # The writer alone reads the prompt and the history (400 + 100 + 300 characters = 200 tokens) and writes
    # as many tokens as the fused answer took (300): 200 * 0.000005 + 300 * 0.00001 = 0.004.
    comparison = turn_cost_comparison(turn=turn)
    assert comparison == CostComparison(actual=0.05, writer_alone=pytest.approx(0.004))  # type: ignore[arg-type]
    line = Template("{% load panel_tags %}{% turn_cost_line turn %}").render(Context({"turn": turn}))
    assert "This run cost $0.050; the writer alone (test/judge) would have cost about $0.0040." in line


def test_an_unknown_cost_is_said_plainly(priced: FakeUpstream, alice: Any) -> None:
    turn = _turn(alice, cost=None)
    turn.panel_snapshot = {**SNAPSHOT, "writer": "test/unpriced"}
    line = Template("{% load panel_tags %}{% turn_cost_line turn %}").render(Context({"turn": turn}))
    assert "The cost of this run is unknown" in line
    assert "what the writer alone would have cost is unknown (no price for test/unpriced)" in line


def test_a_running_turn_shows_no_comparison_yet(priced: FakeUpstream, alice: Any) -> None:
    turn = _turn(alice, cost=None)
    turn.status = "running"
    line = Template("{% load panel_tags %}{% turn_cost_line turn %}").render(Context({"turn": turn}))
    assert line.strip() == ""


def test_the_chatroom_composer_shows_the_default_panels_estimate_with_the_page(alice_client: Client) -> None:
    html = alice_client.get(reverse("chat:home")).content.decode()
    assert 'data-testid="cost-estimate"' in html
    assert "Estimated cost: $0 (offline demo models)." in html  # the demo panel is the default without a key
    assert 'hx-trigger="change from:#panel-select, input changed delay:500ms from:#prompt"' in html


def test_the_chatroom_page_counts_the_history_in_the_writer_alone_estimate(
    priced: FakeUpstream, alice: Any
) -> None:
    from apps.chat.selectors import turn_states_for

    turn = _turn(alice, cost=0.05)
    first, second = turn_states_for(conversation=turn.conversation)
    assert (first.history_chars, second.history_chars) == (0, 400)
    # The page's turn state gives the same figure as the saved turn: history included (0.004, not 0.0025).
    line = Template("{% load panel_tags %}{% turn_cost_line turn %}").render(Context({"turn": second}))
    assert "the writer alone (test/judge) would have cost about $0.0040." in line
