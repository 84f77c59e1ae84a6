"""A turn keeps the panel as it ran: editing or deleting the panel later never rewrites history."""

from __future__ import annotations

from typing import Any

import pytest

from apps.chat.models import Conversation, Turn
from apps.panels.forms import BuilderInput, SeatInput
from apps.panels.models import Panel
from apps.panels.services import panel_delete, panel_save

pytestmark = pytest.mark.django_db


def _saved(owner: Any) -> Panel:
    data = BuilderInput(
        name="Pair",
        seats=(SeatInput("demo/atlas", "0.2", "Be brief."), SeatInput("demo/birch")),
        judge="demo/judge",
        options={"quorum": "1"},
    )
    return panel_save(owner=owner, data=data)


def _turn_with(panel: Panel, owner: Any) -> Turn:
    conversation = Conversation.objects.create(owner=owner, title="history")
    return Turn.objects.create(
        conversation=conversation, position=1, prompt="Why?", panel=panel, panel_snapshot=panel.snapshot()
    )


def test_editing_a_panel_leaves_past_turns_as_they_ran(alice: Any) -> None:
    panel = _saved(alice)
    turn = _turn_with(panel, alice)
    before = dict(turn.panel_snapshot)
    panel_save(
        owner=alice,
        data=BuilderInput(name="Solo", seats=(SeatInput("demo/cedar"),), judge="demo/writer"),
        panel_id=panel.pk,
    )
    turn.refresh_from_db()
    assert turn.panel_snapshot == before
    assert [seat["model"] for seat in turn.panel_snapshot["seats"]] == ["demo/atlas", "demo/birch"]
    assert turn.panel_snapshot["seats"][0]["system_prompt"] == "Be brief."
    assert turn.panel_snapshot["options"] == {"quorum": 1}
    assert turn.panel_snapshot["name"] == "Pair"
    # The panel itself did change.
    assert Panel.objects.get(pk=panel.pk).snapshot()["name"] == "Solo"


def test_deleting_a_panel_keeps_the_turns_copy(alice: Any) -> None:
    panel = _saved(alice)
    turn = _turn_with(panel, alice)
    panel_delete(user=alice, panel_id=panel.pk)
    turn.refresh_from_db()
    assert turn.panel_id is None
    assert turn.panel_snapshot["judge"] == "demo/judge"
    assert len(turn.panel_snapshot["seats"]) == 2


def test_a_panel_with_web_tools_off_runs_with_web_tools_off(alice: Any) -> None:
    from apps.chat.services import fusion_request_for

    on = panel_save(
        owner=alice, data=BuilderInput(name="On", seats=(SeatInput("demo/atlas"),), judge="demo/judge")
    )
    off = panel_save(
        owner=alice,
        data=BuilderInput(name="Off", seats=(SeatInput("demo/atlas"),), judge="demo/judge", web_tools=False),
    )
    assert fusion_request_for(turn=_turn_with(on, alice)).options.web_tools is True
    assert fusion_request_for(turn=_turn_with(off, alice)).options.web_tools is False
