"""The composer's panel chooser follows the panels app's rule (panel_runnability), as sending does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Conversation
from apps.panels.models import Panel, PanelMember
from tests.chat.conftest import user_make
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db

RETIRED = "vendor/retired-model"


@pytest.fixture
def alice() -> Any:
    return user_make("alice")


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def panel_make(owner: Any, name: str, seats: list[str], *, writer: str = "demo/writer") -> Panel:
    panel = Panel.objects.create(
        owner=owner, name=name, slug=name.lower(), judge_model="demo/judge", writer_model=writer
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=position, model_id=model)
        for position, model in enumerate(seats, start=1)
    )
    return panel


def option_for(body: str, name: str) -> str:
    found = re.search(rf"<option [^>]*>{re.escape(name)}[^<]*</option>", body)
    assert found, body
    return found[0]


def test_panels_needing_a_key_are_shown_disabled_with_the_reason(alice_client: Client, settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    quality = option_for(alice_client.get("/").content.decode(), "Quality")
    assert " disabled " in quality and "cannot run here" in quality
    assert "Needs OpenRouter for" in quality and "set OPENROUTER_API_KEY" in quality


def test_a_slug_openrouter_no_longer_lists_is_a_warning_on_a_panel_that_still_runs(
    alice_client: Client, alice: Any, fake_openrouter: FakeUpstream
) -> None:
    # The fake's live catalog lists fake/fast, not RETIRED: one seat of two is gone; the writer is a demo one.
    panel_make(alice, "Mixed", ["fake/fast", RETIRED])
    mixed = option_for(alice_client.get("/").content.decode(), "Mixed")
    assert "disabled" not in mixed
    assert 'data-warnings="1"' in mixed
    assert f"warning, {RETIRED} (seat 2) is not in OpenRouter&#x27;s model list" in mixed


def test_a_panel_the_registry_cannot_route_is_disabled_and_refused_alike(
    alice_client: Client, alice: Any
) -> None:
    panel = panel_make(alice, "Ghost", ["demo/atlas", "demo/ghost"])
    ghost = option_for(alice_client.get("/").content.decode(), "Ghost")
    assert " disabled " in ghost and "Seat 2: There is no demo model called demo/ghost" in ghost

    response = alice_client.post("/c/new/", {"prompt": "hello", "panel": panel.pk})
    assert response.status_code == 400
    refusal = "The panel &#x27;Ghost&#x27; cannot run here. Seat 2: There is no demo model called demo/ghost"
    assert refusal in response.content.decode()
    assert not Conversation.objects.exists()
