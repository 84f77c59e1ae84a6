"""The shell around the chat: a theme remembered per person, keyboard shortcuts on a "?" sheet, and seats of
one model told apart by number."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.chat_layout_helpers import LAPTOP, PASSWORD, SIZES, panel_make, run
from tests.browser.conftest import BrowserLog, PageFactory, login, signup

DARK_BG = "rgb(15, 17, 21)"
LIGHT_BG = "rgb(246, 247, 249)"


def background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


@pytest.mark.parametrize("size", SIZES)
def test_a_chosen_theme_survives_a_reload_and_follows_the_person_to_a_new_log_in(
    new_page: PageFactory, page_log: BrowserLog, size: str
) -> None:
    # The system is light here, so a dark page can only come from the choice.
    page = new_page(viewport=SIZES[size], color_scheme="light")
    signup(page, f"theme-{size}", PASSWORD)
    html = page.locator("html")
    toggle = page.locator("[data-theme-toggle]")
    expect(html).to_have_attribute("data-theme", "system")
    assert background(page) == LIGHT_BG
    for expected in ("light", "dark"):
        with page.expect_response(re.compile(r"/accounts/theme/$")) as response:
            toggle.click()
        assert response.value.status == 204
        expect(html).to_have_attribute("data-theme", expected)
    assert background(page) == DARK_BG
    expect(page.locator('meta[name="color-scheme"]')).to_have_attribute("content", "dark")

    page.reload()
    expect(html).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG

    elsewhere = new_page(viewport=SIZES[size], color_scheme="light")
    login(elsewhere, f"theme-{size}", PASSWORD)
    expect(elsewhere.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(elsewhere) == DARK_BG
    # Back to the system's choice: dark when the system is dark.
    toggle = elsewhere.locator("[data-theme-toggle]")
    with elsewhere.expect_response(re.compile(r"/accounts/theme/$")):
        toggle.click()
    expect(elsewhere.locator("html")).to_have_attribute("data-theme", "system")
    assert background(elsewhere) == LIGHT_BG
    elsewhere.emulate_media(color_scheme="dark")
    assert background(elsewhere) == DARK_BG
    page_log.assert_clean()


@pytest.mark.parametrize("size", SIZES)
def test_question_mark_opens_the_shortcut_sheet_and_the_shortcuts_work(
    new_page: PageFactory, page_log: BrowserLog, size: str
) -> None:
    page = new_page(viewport=SIZES[size])
    signup(page, f"keys-{size}", PASSWORD)
    prompt = page.get_by_role("textbox", name="Prompt")
    sheet = page.get_by_role("dialog", name="Keyboard shortcuts")

    # Typing a question mark in the prompt types it.
    prompt.focus()
    page.keyboard.type("Why?")
    expect(prompt).to_have_value("Why?")
    expect(sheet).to_be_hidden()

    prompt.blur()
    page.keyboard.press("?")
    expect(sheet).to_be_visible()
    for shortcut in ("New conversation", "Focus the prompt", "Stop the running turn"):
        expect(sheet).to_contain_text(shortcut)
    page.keyboard.press("Escape")
    expect(sheet).to_be_hidden()

    page.keyboard.press("/")
    expect(prompt).to_be_focused()
    expect(prompt).to_have_value("Why?")

    run(page, "Which is better for a small team, PostgreSQL or MySQL?")
    page.locator("body").click(position={"x": 5, "y": 200})
    with page.expect_navigation():
        page.keyboard.press("n")
    assert re.search(r"/$", page.url) and "/c/" not in page.url
    expect(page.get_by_text("Ask a panel of models")).to_be_visible()

    # The account menu lists the sheet too.
    page.locator("details.usermenu summary").click()
    page.get_by_role("button", name=re.compile("Keyboard shortcuts")).click()
    expect(sheet).to_be_visible()
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_be_hidden()
    page_log.assert_clean()


def test_seats_of_one_model_are_numbered_in_headers_and_strip(new_page: PageFactory) -> None:
    page = new_page(viewport=LAPTOP)
    signup(page, "twice", PASSWORD)
    panel = panel_make("twice", 4)  # Atlas, Birch, Cedar, Atlas
    run(page, "Which is better for a small team, PostgreSQL or MySQL?", panel)
    turn = page.locator(".turn").last
    names = turn.locator(".strip-seat .strip-name")
    expect(names).to_have_text(["Atlas (demo) #1", "Birch (demo)", "Cedar (demo)", "Atlas (demo) #2"])
    turn.locator("details.panel-answers > summary").click()
    expect(turn.locator("[data-seat] .model-name")).to_have_text(
        ["Atlas (demo) #1", "Birch (demo)", "Cedar (demo)", "Atlas (demo) #2"]
    )
    expect(turn.locator('[data-seat="4"]')).to_have_attribute("aria-label", "Atlas (demo) #2")
