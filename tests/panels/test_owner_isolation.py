"""Nobody sees, edits, deletes, duplicates or runs someone else's panel: every way in answers 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat.models import Conversation, Turn
from apps.panels.forms import BuilderInput, SeatInput
from apps.panels.models import Panel
from apps.panels.selectors import panel_get_for, panel_get_owned
from apps.panels.services import panel_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_panel(alice: Any) -> Panel:
    data = BuilderInput(name="Alice's secret panel", seats=(SeatInput("demo/atlas"),), judge="demo/judge")
    return panel_save(owner=alice, data=data)


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "panels:detail"),
        ("get", "panels:edit"),
        ("post", "panels:edit"),
        ("get", "panels:delete"),
        ("post", "panels:delete"),
        ("post", "panels:duplicate"),
        ("get", "panels:search_edit"),
    ],
)
def test_another_user_gets_404_everywhere(
    bob_client: Client, alices_panel: Panel, method: str, name: str
) -> None:
    url = reverse(name, args=[alices_panel.pk])
    data = {"name": "Taken over", "seat_model": "demo/birch", "judge": "demo/judge", "save": "1"}
    response = getattr(bob_client, method)(url, data if method == "post" else None)
    assert response.status_code == 404
    assert "Alice" not in response.content.decode()
    alices_panel.refresh_from_db()
    assert alices_panel.name == "Alice's secret panel"
    assert Panel.objects.filter(owner__username="bob").count() == 0


def test_another_users_panel_is_not_listed_nor_estimated(bob_client: Client, alices_panel: Panel) -> None:
    # Templates escape the apostrophe: look for the name as the page would carry it.
    assert "Alice&#x27;s secret panel" not in bob_client.get(reverse("panels:list")).content.decode()
    fragment = bob_client.post(reverse("panels:estimate"), {"panel": alices_panel.pk, "prompt": "hi"})
    assert fragment.status_code == 200
    assert "Pick a panel" in fragment.content.decode()


def test_selectors_refuse_other_users_and_anonymous_visitors(
    alice: Any, bob: Any, alices_panel: Panel, django_user_model: Any
) -> None:
    from django.contrib.auth.models import AnonymousUser

    assert panel_get_for(user=alice, panel_id=alices_panel.pk) == alices_panel
    for user in (bob, AnonymousUser()):
        with pytest.raises(Panel.DoesNotExist):
            panel_get_for(user=user, panel_id=alices_panel.pk)
        with pytest.raises(Panel.DoesNotExist):
            panel_get_owned(user=user, panel_id=alices_panel.pk)
    quality = Panel.objects.get(owner=None, slug="quality")
    assert panel_get_for(user=bob, panel_id=quality.pk) == quality
    with pytest.raises(Panel.DoesNotExist):
        panel_get_owned(user=bob, panel_id=quality.pk)


def test_another_user_cannot_run_the_panel_in_the_chatroom(
    alice_client: Client, bob_client: Client, alices_panel: Panel
) -> None:
    response = bob_client.post(reverse("chat:new"), {"panel": alices_panel.pk, "prompt": "Use Alice's panel"})
    assert not Turn.objects.filter(panel=alices_panel).exists()
    assert not Conversation.objects.filter(owner__username="bob", turns__isnull=False).exists()
    assert "Alice&#x27;s secret panel" not in response.content.decode()
    # Alice's chooser offers it at once.
    assert "Alice&#x27;s secret panel" in alice_client.get(reverse("chat:home")).content.decode()
