"""Size limits of the chatroom socket, in Chromium against Daphne: nothing dies silently.

A prompt over the limit is refused in the composer before any frame goes out, and stays in the box; a frame
Daphne drops anyway (over its 1 MiB message limit) is explained, the page says it is reconnecting, reconnects,
and the prompt is back in the box. Below Daphne's limit, an oversized frame gets an error frame and the socket
stays open.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from apps.chat.frames import MAX_FRAME_CHARS
from apps.chat.models import Conversation
from tests.browser.conftest import BrowserLog, LiveServer, signup
from tests.chat.conftest import session_cookie, user_make

RUN_TIMEOUT_MS = 30_000
TWO_MB = 2 * 1024 * 1024
DAPHNE_MAX_MESSAGE_BYTES = 1024 * 1024


def frames_sent(page: Page) -> list[int]:
    """The sizes of every frame the page's sockets send from now on."""
    sizes: list[int] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sizes.append(len(payload)))

    page.on("websocket", watch)
    return sizes


def open_conversation(page: Page, username: str) -> None:
    signup(page, username, "correct horse battery staple")
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("A first question")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open")


def send_normal_prompt_and_see_it_run(page: Page) -> None:
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("And a normal follow-up")
    box.press("Enter")
    expect(page.locator(".turn")).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    expect(page.locator(".turn").nth(1)).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#room-error")).to_be_hidden()


def test_a_2_mb_prompt_is_refused_in_the_composer_and_the_socket_stays_usable(
    page: Page, page_log: BrowserLog
) -> None:
    sizes = frames_sent(page)
    open_conversation(page, "erin")
    sent_before = len(sizes)
    huge = "é" * (TWO_MB // 2)
    box = page.get_by_role("textbox", name="Prompt")
    box.evaluate("(box, text) => { box.value = text; }", huge)
    box.press("Enter")

    error = page.locator("#composer #room-error")
    expect(error).to_have_text(
        f"That prompt is {len(huge):,} characters long; the limit is 32,000. Shorten it and send again."
    )
    expect(box).to_be_focused()
    assert box.evaluate("box => box.value.length") == len(huge), "the prompt stays in the box"
    assert len(sizes) == sent_before, "nothing was sent"
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open")
    expect(page.locator("#connection-status")).to_be_hidden()
    expect(page.locator("#send-button")).to_be_enabled()

    send_normal_prompt_and_see_it_run(page)
    assert max(sizes) <= MAX_FRAME_CHARS
    page_log.assert_clean()


def page_limits_raised(page: Page) -> None:
    """Pages from now on tell room.js limits far above Daphne's, as if the two were out of step.

    The composer's data attributes are changed as the page is parsed, before room.js (a deferred script)
    reads them. (Fulfilling a rewritten document through ``page.route`` would not do: Chromium then blocks the
    page's socket to 127.0.0.1 as a local network access.)
    """
    page.add_init_script(
        """
        new MutationObserver((_, observer) => {
          const composer = document.getElementById("composer");
          if (!composer) return;
          composer.dataset.maxPromptChars = composer.dataset.maxFrameBytes = "100000000";
          observer.disconnect();
        }).observe(document, { childList: true, subtree: true });
        """
    )


def test_a_frame_daphne_drops_is_explained_and_the_page_reconnects_with_the_prompt_kept(
    page: Page, page_log: BrowserLog
) -> None:
    sizes = frames_sent(page)
    open_conversation(page, "frank")
    page_limits_raised(page)
    page.reload()
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open")
    huge = "z" * TWO_MB
    box = page.get_by_role("textbox", name="Prompt")
    box.evaluate("(box, text) => { box.value = text; }", huge)
    box.press("Enter")

    notice = page.locator("#connection-status")
    expect(notice).to_have_text("Connection lost, reconnecting…")
    assert max(sizes) > DAPHNE_MAX_MESSAGE_BYTES
    expect(page.locator("#room-error")).to_contain_text("(2,048 KiB) was being sent; it is back in the box.")
    expect(page.locator("#room-error")).to_contain_text("more than the server")
    assert box.evaluate("box => box.value.length") == len(huge), "the prompt is back in the box"
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open", timeout=RUN_TIMEOUT_MS)
    expect(notice).to_be_hidden()
    expect(page.locator(".turn")).to_have_count(1)

    send_normal_prompt_and_see_it_run(page)
    page_log.assert_clean()


def test_daphne_answers_a_frame_under_its_limit_but_over_ours_with_an_error_and_keeps_the_socket(
    daphne_server: LiveServer,
) -> None:
    user = user_make("grace")
    conversation = Conversation.objects.create(owner=user)
    url = f"{daphne_server.ws_url}/ws/conversations/{conversation.pk}/"
    headers: dict[str, Any] = {"Cookie": session_cookie(user)}
    origin = Origin(daphne_server.url)
    with connect(url, origin=origin, additional_headers=headers, max_size=None) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        under_daphne = json.dumps({"type": "send", "prompt": "x" * (900 * 1024), "panel": 1})
        socket.send(under_daphne)
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and "too large" in error["message"] and "256 KiB" in error["message"]
        socket.send(json.dumps({"type": "resync", "turn": 999_999}))
        assert "no such turn" in json.loads(socket.recv(timeout=10))["message"]

        with pytest.raises(ConnectionClosed) as closed:
            socket.send(json.dumps({"type": "resync", "turn": 1}) + " " * TWO_MB)
            socket.recv(timeout=10)
    # Over Daphne's own limit the connection is dropped without a close frame (a browser sees 1006 and no
    # reason): why room.js never sends a frame that large.
    assert closed.value.rcvd is None
