"""Text deltas in the browser: several columns' deltas come in one WebSocket frame, and room.js applies each
at its exact offset (a gap would make it ask the server for a snapshot, and it never has to)."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, WebSocket, expect

from tests.browser.conftest import BrowserLog, signup

RUN_TIMEOUT_MS = 30_000


def test_deltas_batched_into_frames_reach_the_page_exactly(page: Page, page_log: BrowserLog) -> None:
    received: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: received.append(json.loads(payload)))
        socket.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", watch)
    signup(page, "dora", "correct horse battery staple")
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("Which queue for a small team?")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)

    # The follow-up goes over the open socket: the page sees the run from its first frame to its last.
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open")
    received.clear()
    sent.clear()
    box.fill("And for a team of fifty?")
    box.press("Enter")
    second = page.locator(".turn").nth(1)
    expect(second).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)

    sizes = [len(frame["deltas"]) for frame in received if frame["type"] == "deltas"]
    assert sizes and max(sizes) > 1, sizes
    assert [frame["type"] for frame in sent] == ["send"], "no gap made the page ask for a snapshot"
    for column in second.locator("[data-seat]").all():
        expect(column).to_have_attribute("data-status", "done")
    page_log.assert_clean()
