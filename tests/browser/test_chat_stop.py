"""Stop takes Send's place while a run goes, and Esc stops the run: the turn ends cancelled, its text kept."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_layout_helpers import PASSWORD, RUN_TIMEOUT_MS, SIZES, send
from tests.browser.conftest import BrowserLog, PageFactory, signup


@pytest.mark.parametrize("size", SIZES)
def test_stop_stands_where_send_was_and_esc_stops_the_run_keeping_what_streamed(
    new_page: PageFactory, page_log: BrowserLog, size: str
) -> None:
    page = new_page(viewport=SIZES[size])
    signup(page, f"stop-{size}", PASSWORD)
    send_button = page.get_by_role("button", name="Send")
    where_send_was = send_button.bounding_box()
    send(page, "Explain the CAP theorem in depth")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = page.locator(".turn").first
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible()
    expect(send_button).to_be_hidden()
    box = stop.bounding_box()
    assert where_send_was and box
    assert abs(box["x"] - where_send_was["x"]) < 4
    expect(stop).to_be_in_viewport()
    # Some text streams first, then Esc (focus is in the prompt box, waiting for the follow-up).
    expect(turn.locator("[data-seat] .column-body").first).not_to_have_text("", timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_role("textbox", name="Prompt")).to_be_focused()
    page.keyboard.press("Escape")
    expect(turn).to_have_attribute("data-turn-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    expect(turn.locator(".turn-error")).to_contain_text("Cancelled")
    # The panel stays open: with no fused answer, the columns are what the turn has.
    expect(turn.locator("[data-seat]").first).to_be_visible()
    kept = "".join(turn.locator("[data-seat] .column-body").all_inner_texts())
    assert len(kept.strip()) > 20, kept
    expect(send_button).to_be_visible()
    expect(send_button).to_be_enabled()
    expect(stop).to_be_hidden()
    page_log.assert_clean()


def test_the_stop_button_stops_a_run_and_says_so_until_it_ends(new_page: PageFactory) -> None:
    page = new_page()
    signup(page, "stop-click", PASSWORD)
    send(page, "Explain the CAP theorem in depth")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = page.locator(".turn").first
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(turn).to_have_attribute("data-turn-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    # Focus lands in the prompt box, not on the page, when Stop goes away.
    expect(page.get_by_role("textbox", name="Prompt")).to_be_focused()
