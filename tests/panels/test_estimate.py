"""The composer's estimate informs: a typical figure first (from the user's own recent runs of those models,
else usual answer lengths), the worst case second, and a real run's cost inside the range shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.template import Context, Template
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.chat.models import Conversation, Turn
from apps.chat.services import conversation_create, turn_start
from apps.chat.usage import usage_history_for
from apps.panels.costs import CostEstimate, UsageHistory, history_chars_before, panel_estimate_cost
from apps.panels.models import Panel, PanelMember
from apps.providers.catalog import reset_catalog
from apps.providers.http import shared_client_close
from apps.providers.registry import reset_gateway
from tests.fakes.upstream import FakeUpstream
from tests.panels.conftest import openrouter_model

PRICES = [
    openrouter_model("test/seat-a", prompt="0.000001", completion="0.000002"),
    openrouter_model("test/seat-b", prompt="0.000003", completion="0.000004"),
    openrouter_model("test/judge", prompt="0.000005", completion="0.00001"),
    openrouter_model("test/writer", prompt="0.000002", completion="0.000008"),
]
SNAPSHOT: dict[str, Any] = {
    "seats": [{"seat": 1, "model": "test/seat-a"}, {"seat": 2, "model": "test/seat-b"}],
    "judge": "test/judge",
    "writer": "test/writer",
    "options": {"max_completion_tokens": 1000},
}


def panel_make(owner: Any) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Priced", slug="priced", judge_model="test/judge", writer_model="test/writer"
    )
    for position, model in enumerate(("test/seat-a", "test/seat-b"), start=1):
        PanelMember.objects.create(panel=panel, position=position, model_id=model)
    return panel


def steps(seat_a: int, judge: int, writer: int, *, status: str = "done") -> dict[str, Any]:
    return {
        "steps": [
            {
                "role": "seat",
                "seat": 1,
                "model": "test/seat-a",
                "status": status,
                "usage": {"completion_tokens": seat_a},
            },
            {"role": "judge", "model": "test/judge", "status": "done", "usage": {"completion_tokens": judge}},
            {
                "role": "writer",
                "model": "test/writer",
                "status": "done",
                "usage": {"completion_tokens": writer},
            },
        ]
    }


@pytest.fixture
def priced(live_openrouter: FakeUpstream) -> FakeUpstream:
    live_openrouter.models = PRICES
    return live_openrouter


@pytest.mark.django_db
def test_the_typical_figure_uses_the_median_of_what_each_model_wrote_in_its_role(
    priced: FakeUpstream,
) -> None:
    usage = UsageHistory(
        completions={
            ("seat", "test/seat-a"): [100, 300, 5000],
            ("judge", "test/judge"): [200],
            ("writer", "test/writer"): [150],
        }
    )
    estimate = panel_estimate_cost(snapshot_or_panel=SNAPSHOT, prompt_chars=0, history_chars=0, usage=usage)
    assert estimate is not None and estimate.from_history
    # Seat A writes its median, 300 (capped at the panel's limit elsewhere); seat B has no runs: 400.
    # seat A 0 in, 300 out: 0.0006; seat B 0 in, 400 out: 0.0016
    # judge 700 + 600 = 1300 in, 200 out: 0.0065 + 0.002;
    # writer 700 + 200 + 300 = 1200 in, 150 out: 0.0024 + 0.0012
    assert estimate.typical == pytest.approx(0.0006 + 0.0016 + 0.0085 + 0.0036)
    # The low end takes the least each wrote (seat A 100; seat B none: 20), inputs counted half:
    # seat A 0 + 0.0002; seat B 0 + 0.00008; judge (120 + 600) / 2 = 360 in, 200 out: 0.0018 + 0.002;
    # writer (120 + 200 + 300) / 2 = 310 in, 150 out: 0.00062 + 0.0012
    assert estimate.low == pytest.approx(0.0002 + 0.00008 + 0.0038 + 0.00182)
    without_history = panel_estimate_cost(snapshot_or_panel=SNAPSHOT, prompt_chars=0, history_chars=0)
    assert without_history is not None and estimate.high == without_history.high


@pytest.mark.django_db
def test_the_usage_history_reads_only_the_users_finished_runs_in_one_query(django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user(username="alice")
    bob = django_user_model.objects.create_user(username="bob")
    mine = conversation_create(owner=alice)
    Turn.objects.create(conversation=mine, position=1, prompt="a", status="done", totals=steps(120, 300, 200))
    Turn.objects.create(conversation=mine, position=2, prompt="b", status="done", totals=steps(80, 0, 220))
    Turn.objects.create(conversation=mine, position=3, prompt="c", status="cancelled", totals=steps(9, 9, 9))
    failed_seat = steps(7, 310, 240, status="failed")
    Turn.objects.create(conversation=mine, position=4, prompt="d", status="done", totals=failed_seat)
    theirs = conversation_create(owner=bob)
    Turn.objects.create(
        conversation=theirs, position=1, prompt="x", status="done", totals=steps(9999, 9999, 9999)
    )

    with CaptureQueriesContext(connection) as queries:
        history = usage_history_for(user=alice)
    assert len(queries.captured_queries) == 1
    # Newest first; a failed call and a zero count say nothing about a typical answer.
    assert history.completions == {
        ("seat", "test/seat-a"): [80, 120],
        ("judge", "test/judge"): [310, 300],
        ("writer", "test/writer"): [240, 220, 200],
    }
    assert history.typical("writer", "test/writer") == 220 and history.least("seat", "test/seat-a") == 80


@pytest.mark.django_db
def test_the_composer_says_the_typical_figure_first_and_where_it_comes_from(
    priced: FakeUpstream, alice: Any, alice_client: Client
) -> None:
    panel = panel_make(alice)

    def estimate_html() -> str:
        return alice_client.post(
            reverse("panels:estimate"), {"panel": panel.pk, "prompt": "hi"}
        ).content.decode()

    first = estimate_html()
    assert first.index('data-testid="estimate-typical">about $') < first.index(
        'data-testid="estimate-high">at most $'
    )
    assert "typical: answers of usual length" in first
    conversation = conversation_create(owner=alice)
    Turn.objects.create(
        conversation=conversation, position=1, prompt="a", status="done", totals=steps(50, 90, 60)
    )
    assert "typical: what these models wrote in your recent runs" in estimate_html()


def test_tiny_amounts_are_said_without_about() -> None:
    rendered = Template("{% load panel_tags %}{{ a|usd_about }}|{{ b|usd_about }}|{{ c|usd_about }}").render(
        Context({"a": 0.00004, "b": 0.0123, "c": 0})
    )
    assert rendered == "less than $0.0001|about $0.012|$0"


@pytest.mark.django_db
def test_the_turn_cost_line_never_says_about_less_than(priced: FakeUpstream, alice: Any) -> None:
    conversation = conversation_create(owner=alice)
    turn = Turn.objects.create(
        conversation=conversation,
        position=1,
        prompt="hi",
        panel_snapshot=SNAPSHOT,
        status="done",
        final_text="ok",
        cost=0.00002,
        totals={"steps": [{"role": "writer", "model": "test/writer", "usage": {"completion_tokens": 3}}]},
    )
    html = Template("{% load panel_tags %}{% turn_cost_line turn %}").render(Context({"turn": turn}))
    assert "would have cost less than $0.0001." in html and "about less" not in html


# --- A real run against the loopback OpenRouter ------------------------------------------------------------


@pytest.fixture
async def priced_upstream(settings: Any, fake_upstream: FakeUpstream) -> AsyncIterator[FakeUpstream]:
    settings.OPENROUTER_API_KEY = "sk-or-test"
    settings.OPENROUTER_BASE_URL = fake_upstream.base_url
    settings.PROVIDER_MAX_RETRIES = 0
    fake_upstream.models = PRICES
    reset_catalog()
    reset_gateway()
    yield fake_upstream
    await shared_client_close()
    reset_catalog()
    reset_gateway()


async def run_to_end(user: Any, conversation: Conversation, panel: Panel, prompt: str) -> Turn:
    turn = await turn_start(user=user, conversation=conversation, prompt=prompt, panel=panel)
    for _ in range(200):
        turn = await sync_to_async(Turn.objects.get)(pk=turn.pk)
        if turn.status != Turn.Status.RUNNING:
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not end")


def estimate_now(user: Any, conversation: Conversation, panel: Panel, prompt: str) -> CostEstimate:
    estimate = panel_estimate_cost(
        snapshot_or_panel=panel,
        prompt_chars=len(prompt),
        history_chars=history_chars_before(conversation.turns.all()),
        usage=usage_history_for(user=user),
    )
    assert estimate is not None
    return estimate


@pytest.mark.django_db(transaction=True)
async def test_a_real_runs_cost_falls_inside_the_estimate_and_the_next_typical_is_close(
    priced_upstream: FakeUpstream, django_user_model: Any
) -> None:
    user = await sync_to_async(django_user_model.objects.create_user)(username="carol")
    panel = await sync_to_async(panel_make)(user)
    conversation = await sync_to_async(conversation_create)(owner=user)
    prompts = ["Which is better for a small team, PostgreSQL or MySQL?", "And for a team of fifty engineers?"]

    first = await sync_to_async(estimate_now)(user, conversation, panel, prompts[0])
    turn = await run_to_end(user, conversation, panel, prompts[0])
    assert turn.status == "done" and turn.cost is not None and turn.cost > 0
    assert not first.from_history
    assert first.low <= turn.cost <= first.high

    second = await sync_to_async(estimate_now)(user, conversation, panel, prompts[1])
    turn = await run_to_end(user, conversation, panel, prompts[1])
    assert turn.status == "done" and turn.cost is not None
    assert second.from_history
    assert second.low <= turn.cost <= second.high
    # Informed by the first run, the typical figure is near what the second one cost.
    assert 0.5 * turn.cost <= second.typical <= 2 * turn.cost
