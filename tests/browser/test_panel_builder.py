"""The panel builder in Chromium, by keyboard: build a panel (one demo model on two seats plus a third), save
it, run it from the chatroom and see three columns, the analysis and the fused answer."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserLog, signup

RUN_TIMEOUT_MS = 30_000


def search(page: Page, query: str) -> None:
    box = page.get_by_label("Search the catalog by name, id or vendor")
    box.fill(query)
    expect(page.locator("#search-results .search-count")).to_contain_text(f"matching “{query}”")


def press(page: Page, name: str) -> None:
    """Activate a button the way a keyboard user does: focus it, press Enter."""
    button = page.get_by_role("button", name=name, exact=True)
    button.focus()
    button.press("Enter")


def seat_models(page: Page) -> list[str]:
    return page.locator("[data-testid=seat] input[name=seat_model]").evaluate_all(
        "inputs => inputs.map(i => i.value)"
    )


def test_build_a_panel_by_keyboard_save_it_and_run_it_in_the_chatroom(
    page: Page, page_log: BrowserLog
) -> None:
    signup(page, "carol", "correct horse battery staple")
    page.goto("/panels/")
    page.get_by_role("link", name="New panel").click()
    expect(page.get_by_role("heading", name="New panel")).to_be_visible()
    # A marker that a full page load would wipe: every edit below must happen in place.
    page.evaluate("window.builderMarker = 'still here'")

    page.get_by_label("Name", exact=True).fill("Atlas twice and Cedar")
    search(page, "atlas")
    press(page, "Add Atlas (demo) as a seat")
    expect(page.locator("[data-testid=seat]")).to_have_count(1)
    press(page, "Add Atlas (demo) as a seat")
    expect(page.locator("[data-testid=seat]")).to_have_count(2)
    # Focus stays on the button just pressed, so adding the same model again is one more Enter.
    expect(page.get_by_role("button", name="Add Atlas (demo) as a seat", exact=True)).to_be_focused()

    search(page, "birch")
    press(page, "Add Birch (demo) as a seat")
    search(page, "cedar")
    press(page, "Add Cedar (demo) as a seat")
    expect(page.locator("[data-testid=seat]")).to_have_count(4)
    assert seat_models(page) == ["demo/atlas", "demo/atlas", "demo/birch", "demo/cedar"]
    expect(page.locator("#builder-status")).to_have_text("Added demo/cedar as seat 4.")

    # Move Cedar up one seat: the moved seat's "Move up" button keeps the focus.
    press(page, "Move seat 4 (Cedar (demo)) up")
    expect(page.locator("#builder-status")).to_have_text("Moved demo/cedar to seat 3.")
    assert seat_models(page) == ["demo/atlas", "demo/atlas", "demo/cedar", "demo/birch"]
    expect(page.locator("[data-control=seat-3-up]")).to_be_focused()

    # Remove Birch: focus goes to the seat that is now last.
    press(page, "Remove seat 4 (Birch (demo))")
    expect(page.locator("[data-testid=seat]")).to_have_count(3)
    assert seat_models(page) == ["demo/atlas", "demo/atlas", "demo/cedar"]
    expect(page.locator("[data-control=seat-3-remove]")).to_be_focused()

    search(page, "judge")
    press(page, "Make Judge (demo) the judge")
    expect(page.get_by_label("Judge", exact=True)).to_have_value("demo/judge")
    search(page, "writer")
    press(page, "Make Writer (demo) the writer")
    expect(page.get_by_label("Writer", exact=True)).to_have_value("demo/writer")
    page.get_by_label("Temperature", exact=True).nth(1).fill("0.3")
    assert page.evaluate("window.builderMarker") == "still here"

    # Enter in the name field saves (not some seat button).
    with page.expect_navigation():
        page.get_by_label("Name", exact=True).press("Enter")
    expect(page.get_by_text("Saved “Atlas twice and Cedar”")).to_be_visible()
    expect(page.get_by_role("heading", name="Atlas twice and Cedar")).to_be_visible()

    page.goto("/")
    chooser = page.get_by_label("Panel")
    chooser.select_option(label="Atlas twice and Cedar (demo)")
    expect(page.locator("[data-testid=cost-estimate]")).to_contain_text("Estimated cost: $0")
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("Should a small team self-host its database?")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))

    turn = page.locator(".turn").first
    expect(turn).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    columns = turn.locator("[data-seat]")
    expect(columns).to_have_count(3)
    assert columns.evaluate_all("cols => cols.map(c => c.dataset.model)") == [
        "demo/atlas",
        "demo/atlas",
        "demo/cedar",
    ]
    for index in range(3):
        expect(columns.nth(index)).to_have_attribute("data-status", "done")
        expect(columns.nth(index).locator(".column-body")).not_to_be_empty()
    analysis = turn.locator("[data-section=analysis]")
    # The finished turn leads with its fused answer; the analysis sits in a fold of its own.
    turn.locator("details.analysis-fold > summary").click()
    for section in ("Consensus", "Contradictions", "Partial coverage", "Unique insights", "Blind spots"):
        expect(analysis.get_by_role("heading", name=section)).to_be_visible()
    expect(turn.locator("[data-section=final] .markdown")).not_to_be_empty()
    expect(turn.locator("[data-testid=turn-cost]")).to_contain_text("This run cost $0")
    page_log.assert_clean()


def test_saving_an_invalid_panel_shows_the_errors_next_to_the_fields(
    page: Page, page_log: BrowserLog
) -> None:
    signup(page, "dave", "correct horse battery staple")
    page.goto("/panels/new/")
    page.get_by_role("button", name="Save panel", exact=True).click()
    expect(page.locator("#panel-name-error")).to_have_text("Give the panel a name.")
    expect(page.locator("#seats-error")).to_have_text("Add at least one model to the panel.")
    expect(page.locator("#judge-error")).to_have_text("Choose the judge model.")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    page_log.assert_clean()
