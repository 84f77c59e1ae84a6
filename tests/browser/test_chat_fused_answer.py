"""The fused answer is the turn's answer: in view once the writer starts, the panel folded to a strip that
opens the columns again, the analysis in its own fold, and older turns folded, live and after a reload."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.chat_layout_helpers import PASSWORD, RUN_TIMEOUT_MS, SIZES, run, send
from tests.browser.conftest import PageFactory, signup

# Notes, at the first text of a fused answer (one frame later, after the page reacted), where it is on screen.
WATCH_FINAL = """
(() => {
  window.__finalSeen = null;
  new MutationObserver(() => {
    if (window.__finalSeen) return;
    const stream = document.querySelector(".turn:last-of-type .final [id$=final-text]");
    if (!stream || !stream.textContent.trim()) return;
    window.__finalSeen = "pending";
    requestAnimationFrame(() => {
      const rect = stream.getBoundingClientRect();
      const composer = document.getElementById("composer").getBoundingClientRect();
      const topbar = document.querySelector(".topbar").getBoundingClientRect();
      const panel = stream.closest(".turn").querySelector("details.panel-answers");
      window.__finalSeen = {top: rect.top, composerTop: composer.top, topbarBottom: topbar.bottom,
                            panelOpen: panel.open};
    });
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();
"""


def final_seen(page: Page) -> dict[str, Any]:
    # Polled from here: the strict CSP refuses wait_for_function's string evaluation.
    for _ in range(100):
        seen = page.evaluate("window.__finalSeen")
        if isinstance(seen, dict):
            return seen
        page.wait_for_timeout(50)
    raise AssertionError(f"the fused answer never started streaming: {seen!r}")


@pytest.mark.parametrize("size", SIZES)
def test_the_fused_answer_is_in_view_when_it_starts_streaming_and_the_panel_folds_to_a_strip(
    new_page: PageFactory, size: str
) -> None:
    page = new_page(viewport=SIZES[size], reduced_motion="reduce")
    page.add_init_script(WATCH_FINAL)
    signup(page, f"fused-{size}", PASSWORD)
    # A first turn, so the second starts lower on the page and must be brought into view.
    run(page, "Which is better for a small team, PostgreSQL or MySQL?")
    page.evaluate("window.__finalSeen = null")
    send(page, "And for a team of fifty?")
    second = page.locator(".turn").nth(1)
    expect(second).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    seen = final_seen(page)
    assert seen["panelOpen"] is False, seen
    assert seen["topbarBottom"] <= seen["top"] < seen["composerTop"] - 20, seen

    final = second.locator("[data-section=final] .markdown")
    expect(final).to_be_in_viewport()
    strip = second.locator("details.panel-answers > summary")
    expect(strip).to_be_visible()
    chips = strip.locator(".strip-seat")
    expect(chips).to_have_count(3)
    for index, name in enumerate(("Atlas (demo)", "Birch (demo)", "Cedar (demo)")):
        chip = chips.nth(index)
        expect(chip.locator(".strip-name")).to_have_text(name)
        expect(chip.locator(".strip-state")).to_have_text("done")
        expect(chip.locator(".strip-time")).to_have_text(re.compile(r"\d+(\.\d)? m?s"))
        expect(chip.locator(".strip-cost")).to_have_text("$0")
    expect(second.locator("[data-seat]").first).not_to_be_visible()
    analysis = second.locator("[data-section=analysis]")
    expect(analysis).not_to_be_visible()

    # The strip opens the columns; the analysis has its own fold.
    strip.click()
    expect(second.locator("[data-seat]").first).to_be_visible()
    expect(second.locator("[data-seat]").first.locator(".column-body")).not_to_be_empty()
    second.locator("details.analysis-fold > summary").click()
    expect(analysis.get_by_role("heading", name="Consensus")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_older_turns_fold_to_prompt_and_fused_answer_live_and_after_a_reload(
    new_page: PageFactory, size: str
) -> None:
    page = new_page(viewport=SIZES[size])
    signup(page, f"older-{size}", PASSWORD)
    run(page, "Which is better for a small team, PostgreSQL or MySQL?")
    first = page.locator(".turn").first
    # Someone reading the first turn's columns and analysis...
    first.locator("details.panel-answers > summary").click()
    first.locator("details.analysis-fold > summary").click()
    expect(first.locator("[data-seat]").first).to_be_visible()

    # ...sends a follow-up: the first turn folds as soon as the new one starts.
    send(page, "And for a team of fifty?")
    expect(page.locator(".turn")).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    expect(first.locator("details.panel-answers")).not_to_have_attribute("open", re.compile(".*"))
    expect(first.locator("details.analysis-fold")).not_to_have_attribute("open", re.compile(".*"))
    expect(first.locator("[data-section=final] .markdown")).not_to_be_empty()
    second = page.locator(".turn").nth(1)
    expect(second).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)

    page.reload()
    for turn in (page.locator(".turn").nth(0), page.locator(".turn").nth(1)):
        expect(turn.locator(".turn-prompt")).to_be_visible()
        expect(turn.locator("[data-section=final] .markdown")).to_be_visible()
        expect(turn.locator("[data-seat]").first).not_to_be_visible()
        expect(turn.locator("[data-section=analysis]")).not_to_be_visible()
        expect(turn.locator(".strip-seat")).to_have_count(3)
    # One click away, after the reload too.
    page.locator(".turn").first.locator("details.panel-answers > summary").click()
    expect(page.locator(".turn").first.locator("[data-seat]").first).to_be_visible()
