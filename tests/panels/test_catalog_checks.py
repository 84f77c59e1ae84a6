"""Presets and saved panels checked against OpenRouter's live catalog, and runnable only where they can run.

The live catalog is the loopback fake OpenRouter's ``GET /models`` (OPENROUTER_BASE_URL points at it); a slug
it omits plays a model OpenRouter retired.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.panels.models import Panel, PanelMember
from apps.panels.presets import PRESETS
from apps.panels.runnability import panel_runnability
from tests.fakes.upstream import FakeUpstream
from tests.panels.conftest import openrouter_model

pytestmark = pytest.mark.django_db

RETIRED = "deepseek/deepseek-v4-pro"


def _every_preset_slug_but(retired: str) -> list[dict[str, Any]]:
    slugs = {model for spec in PRESETS.values() for model in [*spec["seats"], spec["judge"], spec["writer"]]}
    return [
        openrouter_model(slug, prompt="0.000001", completion="0.000002")
        for slug in sorted(slugs)
        if slug != retired and not slug.startswith("demo/")
    ]


@pytest.fixture
def retired_catalog(live_openrouter: FakeUpstream) -> FakeUpstream:
    live_openrouter.models = _every_preset_slug_but(RETIRED)
    return live_openrouter


def _custom_panel(owner: Any, *, seats: list[str], judge: str, writer: str | None = None) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Custom", slug="custom", judge_model=judge, writer_model=writer or judge
    )
    for position, model in enumerate(seats, start=1):
        PanelMember.objects.create(panel=panel, position=position, model_id=model)
    return panel


def test_a_retired_slug_warns_on_the_preset_that_uses_it(retired_catalog: FakeUpstream) -> None:
    budget = panel_runnability(panel=Panel.objects.get(owner=None, slug="budget"))
    assert budget.runnable  # two seats and the writer are still there
    assert budget.warnings == [
        f"{RETIRED} (seat 3) is not in OpenRouter's model list: it was retired or renamed. "
        "Edit the panel to replace it."
    ]
    quality = panel_runnability(panel=Panel.objects.get(owner=None, slug="quality"))
    assert quality == (True, [], [])


def test_a_retired_writer_makes_the_panel_unrunnable(retired_catalog: FakeUpstream, alice: Any) -> None:
    panel = _custom_panel(alice, seats=["google/gemini-3-flash-preview"], judge=RETIRED)
    status = panel_runnability(panel=panel)
    assert not status.runnable
    assert status.warnings[0].startswith(f"{RETIRED} (judge, writer) is not in OpenRouter's model list")
    assert status.reasons == [f"The writer {RETIRED} is not available, so no fused answer could be written."]


def test_the_warning_shows_in_the_list_on_the_panel_page_and_next_to_the_chooser(
    retired_catalog: FakeUpstream, alice_client: Client
) -> None:
    budget = Panel.objects.get(owner=None, slug="budget")
    for url in (reverse("panels:list"), reverse("panels:detail", args=[budget.pk])):
        html = alice_client.get(url).content.decode()
        assert f"{RETIRED} (seat 3) is not in OpenRouter" in html, url
    # The chatroom's composer asks for this fragment whenever its panel chooser changes.
    fragment = alice_client.post(
        reverse("panels:estimate"), {"panel": budget.pk, "prompt": ""}
    ).content.decode()
    assert 'data-testid="panel-warnings"' in fragment and RETIRED in fragment
    # The chatroom page itself carries the slot that loads it.
    room = alice_client.get(reverse("chat:home")).content.decode()
    assert 'hx-post="/panels/estimate/"' in room


def test_the_snapshot_alone_never_claims_a_slug_is_retired(alice: Any) -> None:
    # Without a key the shipped snapshot stands in: it is small and dated, so it is not used to warn.
    panel = _custom_panel(alice, seats=["vendor/not-in-the-snapshot"], judge="demo/judge")
    status = panel_runnability(panel=panel)
    assert status.warnings == []


def test_without_a_key_openrouter_panels_say_what_to_set(alice_client: Client) -> None:
    quality = panel_runnability(panel=Panel.objects.get(owner=None, slug="quality"))
    assert not quality.runnable
    assert quality.reasons == [
        "Needs OpenRouter for ~anthropic/claude-opus-latest, ~openai/gpt-latest, ~google/gemini-pro-latest: "
        "set OPENROUTER_API_KEY (or use the demo panel, or models of an endpoint configured in "
        "FUSIONROOM_ENDPOINTS)."
    ]
    html = alice_client.get(reverse("panels:list")).content.decode()
    assert html.count('data-testid="panel-blocked"') == 4  # Quality, Budget, Fast, Self-fusion
    assert "Demo (offline)" in html


def test_demo_and_endpoint_models_run_without_a_key(alice: Any, settings: Any) -> None:
    assert panel_runnability(panel=Panel.objects.get(owner=None, slug="demo")) == (True, [], [])
    settings.FUSIONROOM_ENDPOINTS = {"ollama": "http://127.0.0.1:9/v1"}
    panel = _custom_panel(
        alice, seats=["ollama/llama3.3", "demo/atlas"], judge="ollama/qwen3", writer="demo/writer"
    )
    assert panel_runnability(panel=panel) == (True, [], [])


def test_a_model_the_registry_cannot_route_makes_the_panel_not_runnable(alice: Any) -> None:
    panel = _custom_panel(alice, seats=["demo/atlas", "demo/ghost"], judge="demo/ghost", writer="demo/writer")
    status = panel_runnability(panel=panel)
    assert not status.runnable
    assert len(status.reasons) == 1  # one reason per model, naming every role it plays
    assert status.reasons[0].startswith("Seat 2, judge: There is no demo model called demo/ghost;")


def test_a_panel_with_no_seats_is_not_runnable(alice: Any) -> None:
    panel = _custom_panel(alice, seats=[], judge="demo/judge")
    assert panel_runnability(panel=panel).reasons == ["This panel has no seats: add at least one model."]


def test_snapshots_are_checked_like_panels(retired_catalog: FakeUpstream) -> None:
    snapshot = Panel.objects.get(owner=None, slug="budget").snapshot()
    assert panel_runnability(panel=snapshot).warnings[0].startswith(RETIRED)
