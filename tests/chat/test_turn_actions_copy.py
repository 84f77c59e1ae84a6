"""Copy: each column, the fused answer and the whole turn carry their Markdown source as inert text for the
copy buttons, on the owner's page and on the shared page; the shared page offers no action that changes
anything."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat.models import PanelAnswer, Turn
from apps.chat.selectors import turn_state_for
from apps.chat.services import conversation_create, share_link_create
from apps.chat.turn_markdown import turn_markdown
from tests.chat.conftest import user_make

pytestmark = pytest.mark.django_db

ANALYSIS = {
    "consensus": ["Both are fine"],
    "contradictions": [
        {
            "topic": "Speed",
            "stances": [{"model": "demo/atlas", "stance": "fast"}, {"model": "demo/birch", "stance": "slow"}],
        }
    ],
    "partial_coverage": [],
    "unique_insights": [{"model": "demo/birch", "insight": "Backups"}],
    "blind_spots": ["Cost"],
}
SNAPSHOT = {
    "name": "Demo (offline)",
    "judge": "demo/judge",
    "writer": "demo/writer",
    "seats": [
        {"seat": 1, "model": "demo/atlas", "name": "Atlas", "is_demo": True},
        {"seat": 2, "model": "demo/birch", "name": "Birch", "is_demo": True},
        {"seat": 3, "model": "demo/cedar", "name": "Cedar", "is_demo": True},
    ],
}


def finished_turn() -> Turn:
    owner = user_make("alice")
    conversation = conversation_create(owner=owner, title="Copying")
    turn = Turn.objects.create(
        conversation=conversation,
        position=1,
        prompt="Which **database**?",
        panel_snapshot=SNAPSHOT,
        status="done",
        phase="finished",
        analysis=ANALYSIS,
        final_text="## Fused\n\nUse **PostgreSQL** <script>alert(1)</script>",
        cost=0.0,
    )
    PanelAnswer.objects.create(
        turn=turn, seat=1, model_id="demo/atlas", content="Atlas says **yes**", status="done"
    )
    PanelAnswer.objects.create(
        turn=turn, seat=2, model_id="demo/birch", content="Birch says `no`", status="done"
    )
    PanelAnswer.objects.create(
        turn=turn, seat=3, model_id="demo/cedar", status="failed", error="Upstream 503"
    )
    return turn


def template_text(page: str, element_id: str) -> str:
    match = re.search(rf'<template id="{element_id}">(.*?)</template>', page, re.S)
    assert match, f"no source {element_id}"
    return html.unescape(match[1])


def test_the_turn_as_markdown_has_the_prompt_each_seat_with_its_model_the_analysis_and_the_answer() -> None:
    turn = finished_turn()
    text = turn_markdown(turn_state_for(turn_id=turn.pk))
    order = [
        "## Prompt\n\nWhich **database**?",
        "## Atlas (demo) · `demo/atlas`\n\nAtlas says **yes**",
        "## Birch (demo) · `demo/birch`\n\nBirch says `no`",
        "## Cedar (demo) · `demo/cedar`\n\n_No answer (failed: Upstream 503)._",
        "## Analysis",
        "### Consensus\n\n- Both are fine",
        "### Contradictions\n\n- Speed: Atlas: fast; Birch: slow",
        "### Unique insights\n\n- Birch: Backups",
        "### Blind spots\n\n- Cost",
        "## Fused answer\n\n## Fused\n\nUse **PostgreSQL** <script>alert(1)</script>",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)


def test_the_owners_page_carries_each_copy_source_as_inert_text() -> None:
    turn = finished_turn()
    client = Client()
    client.force_login(turn.conversation.owner)
    page = client.get(reverse("chat:conversation", args=[turn.conversation.pk])).content.decode()

    assert template_text(page, f"turn-{turn.pk}-seat-1-source") == "Atlas says **yes**"
    assert template_text(page, f"turn-{turn.pk}-seat-2-source") == "Birch says `no`"
    assert f"turn-{turn.pk}-seat-3-source" not in page, "no answer, nothing to copy"
    assert template_text(page, f"turn-{turn.pk}-final-source") == turn.final_text
    assert template_text(page, f"turn-{turn.pk}-markdown") == turn_markdown(turn_state_for(turn_id=turn.pk))
    # Escaped inside the template: the answer's markup is text, never elements.
    assert "<script>alert(1)</script>" not in page
    for source in ("seat-1-source", "seat-2-source", "final-source", "markdown"):
        assert f'data-copy-source="turn-{turn.pk}-{source}"' in page
    for action in ('data-turn-action="regenerate"', "data-turn-edit", 'data-turn-action="retry"'):
        assert action in page


def test_the_shared_page_offers_copy_and_no_action_that_changes_anything() -> None:
    turn = finished_turn()
    Turn.objects.filter(pk=turn.pk).update(shown=False)
    again = Turn.objects.create(
        conversation=turn.conversation,
        position=1,
        version=2,
        prompt="Again",
        panel_snapshot=SNAPSHOT,
        status="done",
        final_text="Second answer",
    )
    _link, token = share_link_create(conversation=turn.conversation)
    page = Client().get(reverse("chat:shared", args=[token])).content.decode()

    assert template_text(page, f"turn-{again.pk}-final-source") == "Second answer"
    assert f'data-copy-source="turn-{again.pk}-markdown"' in page
    assert 'aria-label="Version 2 of 2"' in page and "turn_actions.js" in page
    for action in ("data-turn-action=", "data-turn-edit", "data-turn-version=", "prompt-source"):
        assert action not in page
    assert "Which **database**?" not in page, "only the shown version"
