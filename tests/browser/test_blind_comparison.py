"""A blind comparison in Chromium: turn the option on, run the demo panel, vote on A and B, see the names and
the panel's win rate change on the Evaluations page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserLog, LiveServer, signup

RUN_TIMEOUT_MS = 30_000
PANEL = "Demo (offline)"


def _win_rate_row(page: Page) -> None:
    page.goto("/evaluations/")
    expect(page.get_by_test_id("win-rates")).to_be_visible()


def test_a_user_compares_the_demo_panel_with_a_single_model_blind_and_the_win_rate_counts_the_vote(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    signup(page, "carol", "correct horse battery staple")
    _win_rate_row(page)
    expect(page.get_by_test_id("win-rates-empty")).to_be_visible()

    page.goto("/")
    assert PANEL in page.get_by_label("Panel").locator("option:checked").inner_text()
    option = page.get_by_test_id("comparison-option")
    expect(option.get_by_label("Single model to compare with")).to_have_value("")  # the writer by default
    option.get_by_label("Compare with a single model").check()
    expect(page.locator("#comparison-option-status")).to_contain_text("Saved: demo/writer answers too")

    box = page.get_by_role("textbox", name="Prompt")
    box.fill("Which is better for a small team, PostgreSQL or MySQL?")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = page.locator(".turn").first
    expect(turn).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)

    # The block arrives by itself once both answers are done: A and B, no names yet.
    block = turn.locator(".comparison")
    expect(block).to_have_attribute("data-comparison-state", "ready", timeout=RUN_TIMEOUT_MS)
    expect(block.locator('[data-letter="A"] .markdown')).not_to_be_empty()
    expect(block.locator('[data-letter="B"] .markdown')).not_to_be_empty()
    expect(block.locator(".comparison-name")).to_have_count(0)
    expect(block.get_by_test_id("comparison-cost")).to_contain_text("turn total with the baseline: $0")

    block.get_by_role("button", name="A is better").click()

    expect(block).to_have_attribute("data-comparison-state", "voted")
    expect(block.locator(".comparison-name")).to_have_count(2)
    expect(block).to_contain_text("(fused panel)")
    expect(block).to_contain_text("(single model)")
    expect(block.get_by_test_id("comparison-cost")).to_contain_text("demo/writer")
    expect(block.get_by_role("button", name="A is better")).to_have_count(0)
    a_kind = block.locator('[data-letter="A"]').get_attribute("data-kind")
    assert a_kind in ("fused", "single")

    page.reload()
    block = page.locator(".turn").first.locator(".comparison")
    expect(block).to_have_attribute("data-comparison-state", "voted")
    # The order was drawn once and kept.
    expect(block.locator('[data-letter="A"]')).to_have_attribute("data-kind", a_kind)

    _win_rate_row(page)
    row = page.get_by_test_id("win-rates").locator(f'tr[data-panel="{PANEL}"]')
    expect(row.locator('[data-col="n"]')).to_have_text("1")
    wins, losses = ("1", "0") if a_kind == "fused" else ("0", "1")
    expect(row.locator('[data-col="wins"]')).to_have_text(wins)
    expect(row.locator('[data-col="losses"]')).to_have_text(losses)
    expect(row.locator('[data-col="rate"]')).to_have_text("100%" if a_kind == "fused" else "0%")
    page_log.assert_clean()
