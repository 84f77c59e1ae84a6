"""Export and search in Chromium, on a laptop and a phone: the downloaded files parse and hold every seat,
from the owner's page and from the shared page; the history's search finds an old conversation by a prompt
word; a touch screen shows every entry's Rename and Delete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.chat.models import Conversation, Turn
from apps.chat.services import share_link_create, share_link_revoke
from tests.browser.chat_layout_helpers import DEMO_SEATS, PASSWORD, SIZES, run
from tests.browser.conftest import LiveServer, PageFactory, login, signup

OLD_PROMPT = "How long should a **levain** ferment before baking?"


def drawer_open(page: Page) -> None:
    """On a phone the history is a drawer: open it when its button is shown."""
    opener = page.locator("[data-drawer-open]")
    if opener.count() and opener.is_visible():
        opener.click()
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_visible()


def download(page: Page, name: str) -> str:
    menu = page.locator("#export-menu")
    if not menu.evaluate("details => details.open"):
        menu.locator("summary").click()
    with page.expect_download() as info:
        menu.get_by_role("link", name=name).click()
    path = info.value.path()
    assert path is not None
    return Path(path).read_text(encoding="utf-8")


def assert_every_seat(markdown: str, as_json: str) -> dict[str, Any]:
    data = json.loads(as_json)
    assert data["format"] == "fusionroom.conversation" and data["version"] == 1
    turn = data["turns"][0]
    assert [seat["model"] for seat in turn["seats"]] == list(DEMO_SEATS)
    assert all(seat["label"] and seat["answer"] and seat["status"] == "done" for seat in turn["seats"])
    assert turn["prompt"] == OLD_PROMPT and turn["final_answer"] and turn["analysis"]
    assert data["totals"]["turns"] == 1 and data["totals"]["cost"] == 0
    for seat, model in enumerate(DEMO_SEATS, start=1):
        assert f"### Seat {seat}: " in markdown and f"Model `{model}`" in markdown
    assert "### Fused answer" in markdown and "```text\n" + OLD_PROMPT + "\n```" in markdown
    return data


@pytest.mark.parametrize("size", SIZES)
def test_export_downloads_parse_and_hold_every_seat_for_the_owner_and_the_shared_page(
    new_page: PageFactory, daphne_server: LiveServer, size: str
) -> None:
    page = new_page(viewport=SIZES[size], accept_downloads=True)
    signup(page, "alice", PASSWORD)
    run(page, OLD_PROMPT)
    final = page.locator(".turn").last.locator("[data-section=final]").inner_text()

    data = assert_every_seat(download(page, "Markdown (.md)"), download(page, "JSON (.json)"))
    assert data["turns"][0]["final_answer"].split()[0].strip("*#") in final
    new_page.logs[0].assert_clean()

    conversation = Conversation.objects.get(owner__username="alice")
    link, token = share_link_create(conversation=conversation)
    visitor = new_page(viewport=SIZES[size], accept_downloads=True)
    visitor.goto(f"/s/{token}/")
    assert_every_seat(download(visitor, "Markdown (.md)"), download(visitor, "JSON (.json)"))
    new_page.log.assert_clean()

    share_link_revoke(link=link)
    assert visitor.request.get(f"/s/{token}/export.json").status == 404


@pytest.mark.parametrize("size", SIZES)
def test_search_finds_an_old_conversation_from_the_keyboard_and_says_when_nothing_matches(
    new_page: PageFactory, daphne_server: LiveServer, size: str
) -> None:
    page = new_page(viewport=SIZES[size])
    signup(page, "bea", PASSWORD)
    run(page, OLD_PROMPT)
    old = Conversation.objects.get(owner__username="bea")
    owner = User.objects.get(username="bea")
    for n in range(40):
        newer = Conversation.objects.create(owner=owner, title=f"Filler conversation {n}")
        Turn.objects.create(conversation=newer, position=1, prompt=f"Routine question {n}", status="done")

    page.goto("/")
    drawer_open(page)
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("LEVAIN")
    hits = page.locator("[data-testid=search-hits] .search-hit")
    expect(hits).to_have_count(1)
    expect(hits.first.locator("mark")).to_have_text("levain")
    expect(hits.first).to_contain_text("How long should a **levain** ferment")
    expect(page.locator("#conversation-list")).to_be_hidden()

    box.press("Tab")
    expect(hits.first.get_by_role("link")).to_be_focused()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/c/{old.pk}/")

    drawer_open(page)
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("zzyzx")
    expect(page.locator("[data-testid=search-empty]")).to_have_text("No conversation matches “zzyzx”.")
    box.fill("")
    expect(page.locator("[data-testid=search-empty]")).to_have_count(0)
    expect(page.locator("#conversation-list")).to_be_visible()
    expect(page.locator("#conversation-list .conversation-item")).to_have_count(41)
    new_page.logs[0].assert_clean()


def test_rename_and_delete_stay_reachable_on_a_touch_screen(
    new_page: PageFactory, daphne_server: LiveServer
) -> None:
    page = new_page(viewport=SIZES["phone"], has_touch=True, is_mobile=True)
    signup(page, "cal", PASSWORD)
    owner = User.objects.get(username="cal")
    for n in range(2):
        Conversation.objects.create(owner=owner, title=f"Touch {n}")
    page.goto("/")
    assert page.evaluate("matchMedia('(hover: none)').matches")
    drawer_open(page)
    for item in page.locator("#conversation-list .conversation-item").all():
        expect(item.get_by_role("button", name=re.compile("^Rename"))).to_be_visible()
        expect(item.get_by_role("button", name=re.compile("^Delete"))).to_be_visible()
    new_page.logs[0].assert_clean()

    # With a mouse they wait for the pointer (or focus), as before.
    laptop = new_page(viewport=SIZES["laptop"])
    login(laptop, "cal", PASSWORD)
    laptop.goto("/")
    item = laptop.locator("#conversation-list .conversation-item").first
    expect(item.get_by_role("button", name=re.compile("^Rename"))).to_be_hidden()
    item.hover()
    expect(item.get_by_role("button", name=re.compile("^Rename"))).to_be_visible()
