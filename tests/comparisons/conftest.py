"""Fixtures for the comparison tests: the chatroom's (a user's conversation, the loopback upstream as the
endpoint ``fake``, no runs left behind) and helpers to make panels, turns and comparisons."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.chat.models import Conversation, Turn
from apps.comparisons.models import Comparison
from apps.panels.models import Panel, PanelMember
from tests.chat.conftest import _fast_models, endpoint, no_leftover_runs, room, stranger  # noqa: F401


@pytest.fixture(autouse=True)
def _quick_heartbeats(settings: Any) -> None:
    settings.CHAT_HEARTBEAT_SECONDS = 0.1


def fake_panel(owner: Any, *, name: str = "Fake panel") -> Panel:
    """Two fake seats, a fake judge and a fake writer (models of the ``endpoint`` fixture)."""
    panel = Panel.objects.create(
        owner=owner,
        name=name,
        slug=name.lower().replace(" ", "-"),
        judge_model="fake/judge",
        writer_model="fake/writer",
        options={"web_tools": False},
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="fake/seat-one")
    PanelMember.objects.create(panel=panel, position=2, model_id="fake/seat-two")
    return panel


def done_turn(
    conversation: Conversation, *, panel: Panel | None, position: int = 1, final: str = "The fused answer."
) -> Turn:
    snapshot = panel.snapshot() if panel is not None else {"name": "Gone", "seats": []}
    return Turn.objects.create(
        conversation=conversation,
        position=position,
        prompt=f"Question {position}",
        panel=panel,
        panel_snapshot=snapshot,
        status=Turn.Status.DONE,
        phase="finished",
        final_text=final,
        cost=0.01,
        finished_at=timezone.now(),
    )


def comparison_make(turn: Turn, *, owner: Any, baseline_is_a: bool = True, **fields: Any) -> Comparison:
    defaults: dict[str, Any] = {
        "status": Comparison.Status.DONE,
        "text": "The single model's answer.",
        "cost": 0.002,
        "model_id": "demo/cedar",
        "panel_name": turn.panel_snapshot.get("name", ""),
    }
    defaults.update(fields)
    return Comparison.objects.create(
        owner=owner, turn=turn, panel=turn.panel, baseline_is_a=baseline_is_a, **defaults
    )
