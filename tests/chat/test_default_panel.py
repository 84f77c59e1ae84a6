"""The composer opens on a panel that can run: the one last used if it still can, else the first that can."""

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


@pytest.fixture
def alice() -> Any:
    return user_make("alice")


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def panel_make(owner: Any, name: str, seats: list[str]) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name=name, slug=name.lower(), judge_model="demo/judge", writer_model="demo/writer"
    )
    PanelMember.objects.bulk_create(
        PanelMember(panel=panel, position=position, model_id=model)
        for position, model in enumerate(seats, start=1)
    )
    return panel


def selected_option(body: str) -> str:
    chooser = re.search(r'<select id="panel-select".*?</select>', body, re.DOTALL)
    assert chooser, body
    found = re.findall(r"<option [^>]*\bselected\b[^>]*>[^<]*</option>", chooser[0])
    assert len(found) == 1, chooser[0]
    return found[0]


def test_with_a_key_whose_catalog_lacks_the_quality_models_a_new_conversation_opens_on_one_that_runs(
    alice_client: Client, fake_openrouter: FakeUpstream
) -> None:
    body = alice_client.get("/").content.decode()
    # The stock fake's catalog does not list Quality's aliases: that preset is disabled here.
    assert re.search(r"<option [^>]*disabled[^>]*>Quality: cannot run here", body)
    chosen = selected_option(body)
    assert "disabled" not in chosen
    assert "cannot run here" not in chosen


def test_a_new_conversation_opens_on_the_panel_the_person_used_last(
    alice_client: Client, alice: Any, fake_openrouter: FakeUpstream
) -> None:
    mine = panel_make(alice, "Mine", ["fake/fast", "demo/atlas"])
    Conversation.objects.create(owner=alice, title="earlier", last_panel=mine)
    assert ">Mine" in selected_option(alice_client.get("/").content.decode())


def test_a_last_used_panel_that_can_no_longer_run_gives_way_to_one_that_can(
    alice_client: Client, alice: Any
) -> None:
    ghost = panel_make(alice, "Ghost", ["demo/atlas", "demo/ghost"])
    Conversation.objects.create(owner=alice, title="earlier", last_panel=ghost)
    chosen = selected_option(alice_client.get("/").content.decode())
    assert "Ghost" not in chosen and "disabled" not in chosen
    # And inside that conversation too: its own last panel cannot run, so another that can is chosen.
    conversation = Conversation.objects.get(title="earlier")
    chosen = selected_option(alice_client.get(f"/c/{conversation.pk}/").content.decode())
    assert "Ghost" not in chosen and "disabled" not in chosen
