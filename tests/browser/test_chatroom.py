"""The chatroom end to end in Chromium: sign up, run the demo panel, reload, follow up, share read-only."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserLog, LiveServer, PageFactory, signup

RUN_TIMEOUT_MS = 30_000


def send(page: Page, prompt: str) -> None:
    box = page.get_by_role("textbox", name="Prompt")
    box.fill(prompt)
    box.press("Enter")


def turn_texts(page: Page) -> list[str]:
    return [
        page.locator(f"#{turn_id} [data-section=final]").inner_text()
        for turn_id in page.locator(".turn").evaluate_all("turns => turns.map(t => t.id)")
    ]


def test_a_user_runs_the_demo_panel_reloads_follows_up_and_shares_read_only(
    page: Page, page_log: BrowserLog, new_page: PageFactory, daphne_server: LiveServer
) -> None:
    signup(page, "alice", "correct horse battery staple")
    expect(page.get_by_text("Ask a panel of models")).to_be_visible()
    expect(page.get_by_label("Panel")).to_have_value(re.compile(r"\d+"))
    assert "Demo (offline)" in page.get_by_label("Panel").locator("option:checked").inner_text()

    send(page, "Which is better for a small team, PostgreSQL or MySQL?")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    first = page.locator(".turn").first
    expect(first).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    columns = first.locator("[data-seat]")
    expect(columns).to_have_count(3)
    # Once the fused answer is written the panel folds to its strip, which opens the columns again.
    first.locator("details.panel-answers > summary").click()
    for model in ("demo/atlas", "demo/birch", "demo/cedar"):
        column = first.locator(f'[data-model="{model}"]')
        expect(column).to_have_attribute("data-status", "done")
        expect(column.locator(".badge.demo")).to_be_visible()
        expect(column.locator(".column-body")).not_to_be_empty()
    analysis = first.locator("[data-section=analysis]")
    # The analysis sits in a fold of its own, under the panel's strip.
    first.locator("details.analysis-fold > summary").click()
    for section in ("Consensus", "Contradictions", "Partial coverage", "Unique insights", "Blind spots"):
        expect(analysis.get_by_role("heading", name=section)).to_be_visible()
    final = first.locator("[data-section=final] .markdown")
    expect(final).not_to_be_empty()
    expect(first.locator(".progress")).to_have_text("done")
    expect(first.locator(".totals")).to_contain_text("tokens")
    expect(page.locator("#conversation-list")).to_contain_text("Which is better for a small team")

    before = turn_texts(page)
    page.reload()
    expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "done")
    assert turn_texts(page) == before

    send(page, "And for a team of fifty?")
    expect(page.locator(".turn")).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    second = page.locator(".turn").nth(1)
    expect(second).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    expect(second.locator("[data-seat]")).to_have_count(3)
    expect(second.locator("[data-section=final] .markdown")).not_to_be_empty()
    expect(page.locator("#send-button")).to_be_enabled()

    page.locator("#share summary").click()
    page.get_by_role("button", name="Create a share link").click()
    link = page.locator("#share-url")
    expect(link).to_have_value(re.compile(r"/s/[\w-]{40,}/$"))
    share_url = link.input_value()
    all_texts = turn_texts(page)

    visitor = new_page()
    visitor.goto(share_url)
    expect(visitor.locator(".turn")).to_have_count(2)
    for turn in (visitor.locator(".turn").nth(0), visitor.locator(".turn").nth(1)):
        expect(turn).to_have_attribute("data-turn-status", "done")
        expect(turn.locator("[data-seat]")).to_have_count(3)
        expect(turn.locator("[data-section=analysis]")).to_contain_text("Consensus")
    assert turn_texts(visitor) == all_texts
    expect(visitor.locator("#composer")).to_have_count(0)
    expect(visitor.locator("#conversation-list")).to_have_count(0)
    expect(visitor.locator("[data-cancel-turn]")).to_have_count(0)
    assert not any("/ws/" in url for url in new_page.log.requests)
    new_page.log.assert_clean()
    page_log.assert_clean()


def test_cancel_in_the_browser_keeps_what_streamed(page: Page, page_log: BrowserLog) -> None:
    signup(page, "bob", "correct horse battery staple")
    send(page, "Explain the CAP theorem in depth")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = page.locator(".turn").first
    turn.get_by_role("button", name="Cancel").click()
    expect(turn).to_have_attribute("data-turn-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    expect(turn.locator(".turn-error")).to_contain_text("Cancelled")
    expect(turn.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(turn.locator("[data-seat]")).to_have_count(3)
    expect(page.locator("#send-button")).to_be_enabled()
    page_log.assert_clean()


def test_a_refused_prompt_stays_in_the_box_with_the_reason_beside_it(
    page: Page, page_log: BrowserLog
) -> None:
    signup(page, "carol", "correct horse battery staple")
    send(page, "A first question")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    box = page.get_by_role("textbox", name="Prompt")
    expect(box).not_to_have_attribute("maxlength", re.compile(".*"))
    too_long = "y" * 40_000
    box.fill(too_long)
    box.press("Enter")
    error = page.locator("#composer #room-error")
    expect(error).to_contain_text("the limit is 32,000")
    expect(error).to_be_in_viewport()
    expect(box).to_have_value(too_long)
    expect(box).to_be_focused()
    expect(page.locator(".turn")).to_have_count(1)
    page_log.assert_clean()


def test_renaming_from_the_keyboard_updates_the_page_and_shows_errors(
    page: Page, page_log: BrowserLog
) -> None:
    signup(page, "dave", "correct horse battery staple")
    send(page, "Which DNS record for a mail server?")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    entry = page.locator(".conversation-item").first
    entry.get_by_role("button", name=re.compile("^Rename")).click()
    title = page.get_by_role("textbox", name="Title")
    expect(title).to_be_focused()
    title.fill("   ")
    title.press("Enter")
    # The refusal is swapped in where the title is typed, and the page around it stays.
    expect(page.locator(".rename-form [role=alert]")).to_have_text("A title cannot be empty.")
    expect(page.locator("#turns")).to_be_visible()
    title.fill("Mail <b>DNS</b>")
    title.press("Enter")
    link = page.locator(".conversation-item.current a[aria-current=page]")
    expect(link).to_have_text("Mail <b>DNS</b>")
    expect(link).to_be_focused()
    expect(page.locator("#conversation-title")).to_have_text("Mail <b>DNS</b>")
    expect(page).to_have_title("Mail <b>DNS</b> · Fusion Room")
    entry.get_by_role("button", name=re.compile("^Rename")).click()
    expect(title).to_be_focused()
    title.press("Escape")
    expect(title).to_have_count(0)
    expect(link).to_be_focused()
    # The 422 of the refused title is the only response the browser calls an error.
    assert [r for r in page_log.bad_responses if "/rename/" not in r] == []
    assert [e for e in page_log.console_errors if "422" not in e] == []
    assert page_log.page_errors == [] and page_log.dialogs == []
