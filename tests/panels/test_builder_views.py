"""The builder's pages and htmx fragments, through Django's test client."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat.services import options_from_snapshot
from apps.panels.models import Panel

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Trio",
        "seat_model": ["demo/atlas", "demo/atlas", "demo/birch"],
        "seat_temperature": ["", "0.4", ""],
        "seat_system_prompt": ["", "", "Answer in French."],
        "judge": "demo/judge",
        "writer": "",
        "temperature": "",
        "deadline_s": "",
        "quorum": "",
        "max_tool_calls": "",
        "max_completion_tokens": "",
    }
    data.update(changes)
    return data


def _seat_models(html: str) -> list[str]:
    return re.findall(r'name="seat_model" value="([^"]+)"', html)


def test_the_builder_needs_a_login(client: Client) -> None:
    response = client.get(reverse("panels:new"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_new_panel_page_offers_search_and_an_empty_panel(alice_client: Client) -> None:
    response = alice_client.get(reverse("panels:new"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="model-search-q"' in html and 'role="search"' in html
    assert "No seats yet" in html
    # Some models to start with, each with its prices per million tokens and context length.
    assert 'data-model-id="demo/atlas"' in html


def test_search_finds_models_by_vendor_and_shows_prices_per_million(alice_client: Client) -> None:
    response = alice_client.get(reverse("panels:search"), {"q": "deepseek"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-model-id="deepseek/deepseek-v4-pro"' in html
    assert "per M tokens" in html and "1,048,576 tokens" in html
    assert "<html" not in html  # a fragment for htmx, not a page


def test_search_says_unknown_for_missing_prices_and_nothing_found_plainly(alice_client: Client) -> None:
    html = alice_client.get(reverse("panels:search"), {"q": "claude-opus-latest"}).content.decode()
    facts = re.search(r'data-model-id="~anthropic/claude-opus-latest".*?</dl>', html, re.S)
    assert facts is not None
    assert re.findall(r"<dd>(.*?)</dd>", facts.group(0)) == ["unknown", "unknown", "unknown"]
    html = alice_client.get(reverse("panels:search"), {"q": "demo atlas"}).content.decode()
    assert "Atlas (demo)" in html and "<dd>free</dd>" in html
    html = alice_client.get(reverse("panels:search"), {"q": "zzz-no-such"}).content.decode()
    assert "No model matches “zzz-no-such”" in html


def test_adding_a_seat_swaps_only_the_members_fragment(alice_client: Client) -> None:
    response = alice_client.post(reverse("panels:new"), _form(add_model="demo/cedar"), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="members"')
    assert _seat_models(html) == ["demo/atlas", "demo/atlas", "demo/birch", "demo/cedar"]
    # What the person typed in other seats survives the round trip.
    assert 'value="0.4"' in html and "Answer in French." in html
    assert 'hx-swap-oob="true">Added demo/cedar as seat 4.</div>' in html


def test_moving_a_seat_keeps_focus_on_the_moved_seat(alice_client: Client) -> None:
    html = alice_client.post(reverse("panels:new"), _form(seat_action="up:3"), headers=HTMX).content.decode()
    assert _seat_models(html) == ["demo/atlas", "demo/birch", "demo/atlas"]
    focused = re.findall(r'data-control="(seat-\d-\w+)"[^>]*autofocus', html.replace("\n", " "))
    assert focused == ["seat-2-up"]
    assert "Moved demo/birch to seat 2." in html


def test_removing_a_seat_moves_focus_to_the_seat_that_took_its_place(alice_client: Client) -> None:
    html = alice_client.post(
        reverse("panels:new"), _form(seat_action="remove:1"), headers=HTMX
    ).content.decode()
    assert _seat_models(html) == ["demo/atlas", "demo/birch"]
    focused = re.findall(r'data-control="(seat-\d-\w+)"[^>]*autofocus', html.replace("\n", " "))
    assert focused == ["seat-1-remove"]


def test_seat_buttons_work_without_javascript_too(alice_client: Client) -> None:
    response = alice_client.post(reverse("panels:new"), _form(seat_action="down:1"))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert _seat_models(html) == ["demo/atlas", "demo/atlas", "demo/birch"]


def test_saving_creates_the_panel_and_shows_it(alice_client: Client, alice: Any) -> None:
    response = alice_client.post(reverse("panels:new"), _form(save="1"), follow=True)
    panel = Panel.objects.get(owner=alice, name="Trio")
    assert response.redirect_chain[-1][0] == reverse("panels:detail", args=[panel.pk])
    html = response.content.decode()
    assert "Saved “Trio”" in html
    assert list(panel.members.values_list("model_id", flat=True)) == [
        "demo/atlas",
        "demo/atlas",
        "demo/birch",
    ]


def test_validation_errors_are_shown_next_to_their_fields(alice_client: Client, alice: Any) -> None:
    Panel.objects.create(
        owner=alice, name="Trio", slug="trio", judge_model="demo/judge", writer_model="demo/judge"
    )
    form = _form(save="1", seat_model=["demo/atlas", "nope/ghost"], seat_temperature=["", "9"], quorum="0")
    response = alice_client.post(reverse("panels:new"), form)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="error-summary"' in html
    assert re.search(
        r'id="panel-name".*?aria-invalid="true".*?You already have a panel called “Trio”', html, re.S
    )
    assert re.search(r'id="seat-2-model-error">Unknown model nope/ghost', html)
    assert re.search(r'id="seat-2-temperature-error">Must be at most 2\.', html)
    assert re.search(r'id="option-quorum-error">Must be at least 1\.', html)
    # Nothing typed is lost.
    assert _seat_models(html) == ["demo/atlas", "nope/ghost"]


def test_an_empty_panel_cannot_be_saved(alice_client: Client) -> None:
    form = _form(save="1", name="", seat_model=[], seat_temperature=[], seat_system_prompt=[])
    html = alice_client.post(reverse("panels:new"), form).content.decode()
    assert 'id="panel-name-error">Give the panel a name.' in html
    assert 'id="seats-error">Add at least one model to the panel.' in html


def test_editing_loads_the_panel_and_saves_changes(alice_client: Client, alice: Any) -> None:
    alice_client.post(reverse("panels:new"), _form(save="1", max_tool_calls="2"))
    panel = Panel.objects.get(owner=alice, name="Trio")
    html = alice_client.get(reverse("panels:edit", args=[panel.pk])).content.decode()
    assert _seat_models(html) == ["demo/atlas", "demo/atlas", "demo/birch"]
    assert re.search(r'id="option-max_tool_calls"[^>]*value="2"', html.replace("\n", " "))
    alice_client.post(
        reverse("panels:edit", args=[panel.pk]), _form(save="1", name="Renamed", seat_model=["demo/cedar"])
    )
    panel.refresh_from_db()
    assert panel.name == "Renamed"
    assert list(panel.members.values_list("model_id", flat=True)) == ["demo/cedar"]


def test_the_list_shows_own_panels_and_presets_with_duplicate_buttons(alice_client: Client) -> None:
    alice_client.post(reverse("panels:new"), _form(save="1"))
    html = alice_client.get(reverse("panels:list")).content.decode()
    assert "Your panels" in html and "Trio" in html
    for name in ("Quality", "Budget", "Fast", "Self-fusion", "Demo (offline)"):
        assert f"Duplicate {name}" in html


def test_duplicate_then_delete_with_confirmation(alice_client: Client, alice: Any) -> None:
    fast = Panel.objects.get(owner=None, slug="fast")
    response = alice_client.post(reverse("panels:duplicate", args=[fast.pk]))
    copy = Panel.objects.get(owner=alice, name="Fast (copy)")
    assert response["Location"] == reverse("panels:edit", args=[copy.pk])
    confirm = alice_client.get(reverse("panels:delete", args=[copy.pk])).content.decode()
    assert "Delete “Fast (copy)”?" in confirm and "keep their own copy" in confirm
    assert Panel.objects.filter(pk=copy.pk).exists()  # asking is not deleting
    alice_client.post(reverse("panels:delete", args=[copy.pk]))
    assert not Panel.objects.filter(pk=copy.pk).exists()


def test_presets_can_be_viewed_but_not_edited_or_deleted(alice_client: Client) -> None:
    quality = Panel.objects.get(owner=None, slug="quality")
    assert alice_client.get(reverse("panels:detail", args=[quality.pk])).status_code == 200
    assert alice_client.get(reverse("panels:edit", args=[quality.pk])).status_code == 404
    assert alice_client.post(reverse("panels:delete", args=[quality.pk])).status_code == 404
    assert Panel.objects.filter(pk=quality.pk).exists()


def test_search_offers_a_typed_model_id_of_a_configured_endpoint(alice_client: Client, settings: Any) -> None:
    settings.FUSIONROOM_ENDPOINTS = {"ollama": "http://127.0.0.1:9/v1"}
    html = alice_client.get(reverse("panels:search"), {"q": "ollama/llama3.2"}).content.decode()
    assert 'data-model-id="ollama/llama3.2"' in html
    assert 'name="add_model" value="ollama/llama3.2"' in html
    # Not for a server nobody configured, nor for the bare endpoint name.
    html = alice_client.get(reverse("panels:search"), {"q": "vllm/llama3.2"}).content.decode()
    assert 'data-model-id="vllm/llama3.2"' not in html
    html = alice_client.get(reverse("panels:search"), {"q": "ollama/"}).content.decode()
    assert 'data-model-id="ollama/"' not in html


def test_web_tools_are_on_by_default_and_an_unticked_box_turns_them_off(
    alice_client: Client, alice: Any
) -> None:
    html = alice_client.get(reverse("panels:new")).content.decode()
    assert re.search(r'id="option-web_tools"[^>]*checked', html)
    alice_client.post(reverse("panels:new"), _form(save="1", web_tools_shown="1", web_tools="1"))
    assert "web_tools" not in Panel.objects.get(owner=alice, name="Trio").options

    alice_client.post(reverse("panels:new"), _form(save="1", name="Offline", web_tools_shown="1"))
    panel = Panel.objects.get(owner=alice, name="Offline")
    assert panel.options == {"web_tools": False}
    edit = alice_client.get(reverse("panels:edit", args=[panel.pk])).content.decode()
    assert re.search(r'id="option-web_tools"[^>]*>', edit)
    assert not re.search(r'id="option-web_tools"[^>]*checked', edit)
    detail = alice_client.get(reverse("panels:detail", args=[panel.pk])).content.decode()
    assert re.search(r"<dt>Web tools</dt><dd>off</dd>", detail)


def test_a_seat_edit_keeps_the_web_tools_box_as_it_was(alice_client: Client) -> None:
    def box(**changes: Any) -> str:
        html = alice_client.post(
            reverse("panels:new"), _form(add_model="demo/cedar", **changes)
        ).content.decode()
        found = re.search(r'<input id="option-web_tools"[^>]*>', html)
        assert found is not None
        return found.group()

    assert "checked" not in box(web_tools_shown="1")
    assert "checked" in box(web_tools_shown="1", web_tools="1")


def test_the_deadline_field_shows_the_default_and_a_change_is_saved_and_run(
    alice_client: Client, alice: Any
) -> None:
    html = alice_client.get(reverse("panels:new")).content.decode().replace("\n", " ")
    field = re.search(r'<input id="option-deadline_s"[^>]*>', html)
    assert field is not None and 'placeholder="90"' in field.group(0) and 'value=""' in field.group(0)
    assert 'aria-describedby="option-deadline_s-help"' in field.group(0)
    assert re.search(r'id="option-deadline_s-help">Default 90\. The judge starts with the answers', html)

    alice_client.post(reverse("panels:new"), _form(save="1"))
    panel = Panel.objects.get(owner=alice, name="Trio")
    # Saved without one, the panel follows the default (stored nowhere, so it can change for every panel).
    assert "deadline_s" not in panel.options
    assert options_from_snapshot(panel.snapshot()).deadline_s == 90
    detail = alice_client.get(reverse("panels:detail", args=[panel.pk])).content.decode()
    assert "Defaults (a 90 s deadline, every seat awaited" in detail

    alice_client.post(reverse("panels:edit", args=[panel.pk]), _form(save="1", deadline_s="150"))
    panel.refresh_from_db()
    assert panel.options == {"deadline_s": 150}
    assert options_from_snapshot(panel.snapshot()).deadline_s == 150
    html = alice_client.get(reverse("panels:edit", args=[panel.pk])).content.decode().replace("\n", " ")
    assert re.search(r'id="option-deadline_s"[^>]*value="150"', html)

    alice_client.post(reverse("panels:edit", args=[panel.pk]), _form(save="1", max_tool_calls="2"))
    detail = alice_client.get(reverse("panels:detail", args=[panel.pk])).content.decode()
    assert re.search(r"<dt>Deadline \(seconds\)</dt><dd>90 \(default\)</dd>", detail)
