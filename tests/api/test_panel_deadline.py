"""A panel seat that stalls holds an API run only until the default deadline, however fusion is reached."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from openai import AsyncOpenAI

from apps.fusion import schemas
from apps.panels.models import Panel, PanelMember
from tests.api.conftest import Caller
from tests.fakes.upstream import FakeUpstream, ModelScript

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
SEATS = ["vendor/a", "vendor/stalled"]
PLUGIN = {"id": "fusion", "analysis_models": SEATS, "model": "demo/judge"}
# The shipped default is 90 s (tests/fusion/test_engine_quorum_deadline.py); a short one keeps these short.
DEFAULT = 0.5

REQUESTS: dict[str, dict[str, Any]] = {
    "model slug of a panel saved without a deadline": {"model": "fusion/stall-pair"},
    "plugin": {"model": "fusion", "extra_body": {"plugins": [PLUGIN]}},
    "server tool": {
        "model": "demo/writer",
        "tools": [{"type": "fusion"}],
        "tool_choice": "required",
        "extra_body": {"plugins": [PLUGIN]},
    },
}


def _panel(caller: Caller) -> Panel:
    panel = Panel.objects.create(
        owner=caller.user,
        name="Stall pair",
        slug="stall-pair",
        judge_model="demo/judge",
        writer_model="demo/writer",
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=i, model_id=m) for i, m in enumerate(SEATS, start=1)
    )
    return panel


@pytest.mark.parametrize("shape", list(REQUESTS))
async def test_a_stalled_seat_is_cut_at_the_default_deadline_and_the_run_answers(
    shape: str, oai: AsyncOpenAI, alice: Caller, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schemas, "DEFAULT_DEADLINE_S", DEFAULT)
    await sync_to_async(_panel)(alice)
    upstream.script("vendor/stalled", ModelScript(text="Half an answer and then nothing", stall_after=2))

    started = time.perf_counter()
    completion = await oai.chat.completions.create(
        messages=[{"role": "user", "content": QUESTION}], timeout=30, **REQUESTS[shape]
    )
    elapsed = time.perf_counter() - started

    fusion = completion.model_extra["fusion"]
    assert fusion["status"] == "ok"
    assert [r["model"] for r in fusion["responses"]] == ["vendor/a"]
    assert [(f["model"], f["error"]) for f in fusion["failed_models"]] == [
        ("vendor/stalled", f"did not finish within the {DEFAULT:g} s deadline")
    ]
    assert completion.choices[0].message.content
    assert DEFAULT <= elapsed < 10
