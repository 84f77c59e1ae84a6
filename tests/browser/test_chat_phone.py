"""On a phone the history is a drawer, the composer one short line and the columns a carousel picked by tabs;
a laptop keeps the sidebar and the columns side by side. Checked with 1, 3 and 8 seats."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.chat_layout_helpers import LAPTOP, PASSWORD, PHONE, panel_make, run
from tests.browser.conftest import BrowserLog, PageFactory, signup


def test_on_a_phone_the_chat_comes_first_and_the_history_is_a_drawer(
    new_page: PageFactory,
) -> None:
    page = new_page(viewport=PHONE)
    signup(page, "drawer", PASSWORD)
    run(page, "Which is better for a small team, PostgreSQL or MySQL?")
    sidebar = page.locator("#sidebar")
    opener = page.get_by_role("button", name="Conversations")
    expect(sidebar).not_to_be_visible()
    expect(opener).to_have_attribute("aria-expanded", "false")
    # The chat is the first thing under the top bar: the conversation's title, then the turn.
    topbar = page.locator(".topbar").bounding_box()
    head = page.locator(".conversation-head").bounding_box()
    assert topbar and head and head["y"] - (topbar["y"] + topbar["height"]) < 40
    expect(page.get_by_role("textbox", name="Prompt")).to_be_in_viewport()

    opener.click()
    expect(sidebar).to_be_visible()
    expect(sidebar).to_be_in_viewport()
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(sidebar.locator("a[aria-current=page]")).to_be_focused()
    expect(sidebar.locator("#conversation-list")).to_contain_text("Which is better for a small team")
    page.keyboard.press("Escape")
    expect(sidebar).not_to_be_visible()
    expect(opener).to_be_focused()

    opener.click()
    expect(sidebar).to_be_visible()
    # The veil beside the drawer closes it too.
    page.mouse.click(PHONE["width"] - 20, PHONE["height"] // 2)
    expect(sidebar).not_to_be_visible()

    opener.click()
    with page.expect_navigation():
        sidebar.get_by_role("link", name="New conversation").click()
    expect(page.get_by_text("Ask a panel of models")).to_be_in_viewport()
    expect(sidebar).not_to_be_visible()


def test_on_a_laptop_the_sidebar_stays_in_place_and_there_is_no_drawer_button(new_page: PageFactory) -> None:
    page = new_page(viewport=LAPTOP)
    signup(page, "sidebar", PASSWORD)
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.get_by_role("button", name="Conversations")).to_be_hidden()


def test_on_a_phone_the_composer_is_one_short_line_with_details_on_demand(new_page: PageFactory) -> None:
    page = new_page(viewport=PHONE)
    signup(page, "composer", PASSWORD)
    chooser = page.get_by_label("Panel").bounding_box()
    estimate = page.locator("#cost-estimate").bounding_box()
    assert chooser and estimate
    # The panel and its estimate share one row.
    assert abs((chooser["y"] + chooser["height"] / 2) - (estimate["y"] + estimate["height"] / 2)) < 12
    composer = page.locator("#composer").bounding_box()
    assert composer and composer["height"] < 190, composer
    expect(page.locator("#composer .hint").first).to_be_hidden()
    details = page.get_by_role("button", name="Details")
    expect(details).to_have_attribute("aria-expanded", "false")
    details.click()
    expect(page.get_by_role("button", name="Less")).to_have_attribute("aria-expanded", "true")
    expanded = page.locator("#composer").bounding_box()
    assert expanded and expanded["height"] > composer["height"]


def columns_in_view(page: Page) -> list[int]:
    turn = page.locator(".turn").last
    seats = turn.locator("[data-seat]")
    viewport = page.viewport_size
    assert viewport is not None
    shown = []
    for index in range(seats.count()):
        box = seats.nth(index).bounding_box()
        if box and box["x"] >= -1 and box["x"] + box["width"] <= viewport["width"] + 1:
            shown.append(index + 1)
    return shown


@pytest.mark.parametrize("seats", [3, 8])
def test_on_a_phone_tabs_pick_one_column_at_a_time(
    new_page: PageFactory, page_log: BrowserLog, seats: int
) -> None:
    page = new_page(viewport=PHONE, reduced_motion="reduce")
    signup(page, f"tabs{seats}", PASSWORD)
    panel = panel_make(f"tabs{seats}", seats)
    run(page, "Which is better for a small team, PostgreSQL or MySQL?", panel)
    turn = page.locator(".turn").last
    turn.locator("details.panel-answers > summary").click()
    tabs = turn.get_by_role("tab")
    expect(tabs).to_have_count(seats)
    expect(tabs.first).to_have_attribute("aria-selected", "true")
    expect(turn.locator("[data-seat]").first).to_be_visible()
    assert columns_in_view(page) == [1]

    tabs.nth(seats - 1).click()
    expect(tabs.nth(seats - 1)).to_have_attribute("aria-selected", "true")
    expect(tabs.first).to_have_attribute("aria-selected", "false")
    expect(turn.locator(f'[data-seat="{seats}"]')).to_be_in_viewport()
    page.wait_for_timeout(200)
    assert columns_in_view(page) == [seats]
    # Arrow keys move between tabs, and the column follows.
    tabs.nth(seats - 1).press("ArrowLeft")
    expect(tabs.nth(seats - 2)).to_be_focused()
    expect(tabs.nth(seats - 2)).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(200)
    assert columns_in_view(page) == [seats - 1]
    # Duplicate seats are numbered in the tabs as in the headers.
    if seats == 8:
        expect(tabs.nth(0)).to_have_text("Atlas (demo) #1")
        expect(tabs.nth(3)).to_have_text("Atlas (demo) #2")
        expect(turn.locator('[data-seat="4"] .model-name')).to_have_text("Atlas (demo) #2")
    page_log.assert_clean()


@pytest.mark.parametrize("seats", [1, 3, 8])
def test_on_a_laptop_the_columns_stand_side_by_side_without_tabs(new_page: PageFactory, seats: int) -> None:
    page = new_page(viewport=LAPTOP)
    signup(page, f"wide{seats}", PASSWORD)
    panel = panel_make(f"wide{seats}", seats)
    run(page, "Which is better for a small team, PostgreSQL or MySQL?", panel)
    turn = page.locator(".turn").last
    turn.locator("details.panel-answers > summary").click()
    expect(turn.locator(".seat-tab")).to_have_count(seats if seats > 1 else 0)
    if seats > 1:
        expect(turn.locator(".seat-tab").first).to_be_hidden()
    tops = {round(box["y"]) for box in (c.bounding_box() for c in turn.locator("[data-seat]").all()) if box}
    assert len(tops) == 1, tops
    assert len(columns_in_view(page)) == min(seats, 3)


def test_on_a_phone_one_seat_fills_the_width_without_tabs(new_page: PageFactory) -> None:
    page = new_page(viewport=PHONE)
    signup(page, "single", PASSWORD)
    panel = panel_make("single", 1)
    run(page, "Which is better for a small team, PostgreSQL or MySQL?", panel)
    turn = page.locator(".turn").last
    turn.locator("details.panel-answers > summary").click()
    expect(turn.get_by_role("tab")).to_have_count(0)
    column = turn.locator("[data-seat]").first.bounding_box()
    assert column and column["width"] > PHONE["width"] * 0.8
    expect(turn.locator("[data-section=final] .markdown")).not_to_be_empty()
    assert re.search(r"\S", turn.locator("[data-seat] .column-body").inner_text())
