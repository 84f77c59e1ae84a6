"""Acting on answers in Chromium, on a laptop (1280x720) and a phone (390x844): copy (a column, the fused
answer, the whole turn as Markdown; on the shared page too), regenerate with versions that last across a
reload, edit the last prompt and resend, retry the failed seats (then the judge and the writer again), and
the tokens of a cancelled turn.

This module's server knows a loopback OpenAI-compatible endpoint ``fake`` (tests/fakes/upstream.py) whose
``flaky`` model answers 503 until the test brings it back up, and whose judge and writer count their calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect

from apps.panels.models import Panel, PanelMember
from tests.browser.conftest import PageFactory, login, signup
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest
from tests.live_server import LiveServer, live_server_start

RUN_TIMEOUT_MS = 30_000
PASSWORD = "correct horse battery staple"
# Slow enough that a run can be cancelled mid-answer, fast enough that a run takes a few seconds.
DEMO_DELAY = 0.01
VIEWPORTS = {
    "laptop": {"width": 1280, "height": 720},
    "phone": {"width": 390, "height": 844},
}
CLIPBOARD = ["clipboard-read", "clipboard-write"]


class Flaky:
    """The ``flaky`` model: down (503) until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False

    def __call__(self, request: RecordedRequest) -> ModelScript:
        if self.up:
            return ModelScript(text="Back up and answering with **every** detail.")
        return ModelScript(error_status=503, error_message="Service temporarily unavailable")


@pytest.fixture(scope="module")
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture(scope="module")
def upstream(flaky: Flaky) -> Iterator[FakeUpstream]:
    server = FakeUpstream(
        scripts={
            "flaky": flaky,
            "writer": lambda request: ModelScript(
                text="Fused again, with every seat." if flaky.up else "The first fused answer."
            ),
        }
    )
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def _daphne_process(
    django_db_setup: None, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server_start(
        settings_module="tests.browser.server_settings",
        ready_path="/accounts/login/",
        log_dir=Path(tmp_path_factory.mktemp("daphne-turn-actions")),
        env={
            "DEMO_MODEL_DELAY": str(DEMO_DELAY),
            "FUSIONROOM_ENDPOINTS": f"fake={upstream.base_url}",
            "PROVIDER_MAX_RETRIES": "0",
        },
    ) as server:
        yield server


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return VIEWPORTS[request.param]


@pytest.fixture
def room_page(new_page: PageFactory, viewport: dict[str, int], daphne_server: LiveServer) -> Page:
    return new_page(viewport=viewport, permissions=CLIPBOARD)


def send(page: Page, prompt: str) -> None:
    box = page.get_by_role("textbox", name="Prompt")
    box.fill(prompt)
    box.press("Enter")


def last_turn_done(page: Page) -> Locator:
    turn = page.locator(".turn").last
    expect(turn).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    return turn


def clipboard(page: Page) -> str:
    return str(page.evaluate("() => navigator.clipboard.readText()"))


def open_panel(turn: Locator) -> None:
    """The columns fold away once the fused answer is written: open them."""
    panel = turn.locator("details.panel-answers")
    if panel.get_attribute("open") is None:
        panel.locator("summary").first.click()


def test_copy_puts_a_column_the_fused_answer_and_the_whole_turn_on_the_clipboard(
    room_page: Page, new_page: PageFactory, viewport: dict[str, int]
) -> None:
    page = room_page
    signup(page, f"copier{viewport['width']}", PASSWORD)
    send(page, "Which is better for a small team, PostgreSQL or MySQL?")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = last_turn_done(page)

    final = turn.locator("[data-section=final]")
    final.get_by_role("button", name="Copy the fused answer").click()
    expect(final.get_by_role("button", name="Copy the fused answer")).to_have_text("Copied")
    fused = clipboard(page)
    assert fused.strip() and "<" not in fused[:1]
    # The Markdown source, not the rendered text: what the page shows as a heading is "#" text here.
    assert fused == turn.locator("template[id$='-final-source']").evaluate("t => t.content.textContent")

    open_panel(turn)
    column = turn.locator('[data-model="demo/atlas"]')
    column.get_by_role("button", name=re.compile("^Copy the answer of")).click()
    answer = clipboard(page)
    assert answer and answer != fused
    assert answer == column.locator("template").evaluate("t => t.content.textContent")

    turn.get_by_role("button", name="Copy turn as Markdown").click()
    whole = clipboard(page)
    assert whole.startswith("## Prompt\n\nWhich is better for a small team, PostgreSQL or MySQL?")
    for part in ("`demo/atlas`", "`demo/birch`", "`demo/cedar`", "## Analysis", "## Fused answer", answer):
        assert part in whole
    assert whole.rstrip().endswith(fused.rstrip())

    page.locator("#share summary").click()
    page.get_by_role("button", name="Create a share link").click()
    share_url = page.locator("#share-url").input_value()
    visitor = new_page(viewport=viewport, permissions=CLIPBOARD)
    visitor.goto(share_url)
    visitor.get_by_role("button", name="Copy turn as Markdown").click()
    assert clipboard(visitor) == whole
    for action in ("Regenerate", "Edit prompt"):
        expect(visitor.get_by_role("button", name=action)).to_have_count(0)
    for log in new_page.logs:
        log.assert_clean()


def test_regenerate_keeps_both_versions_after_a_reload_and_the_arrows_switch(
    room_page: Page, new_page: PageFactory, viewport: dict[str, int]
) -> None:
    page = room_page
    signup(page, f"regen{viewport['width']}", PASSWORD)
    send(page, "Name three prime numbers")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    first_id = last_turn_done(page).get_attribute("id")

    page.locator(".turn").last.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".turn").last).not_to_have_attribute("id", first_id or "", timeout=RUN_TIMEOUT_MS)
    expect(page.locator(".turn")).to_have_count(1)
    turn = last_turn_done(page)
    second_id = turn.get_attribute("id")
    expect(turn.locator(".version-label")).to_have_text("2/2")

    page.reload()
    turn = last_turn_done(page)
    expect(page.locator(".turn")).to_have_count(1)
    expect(turn).to_have_attribute("id", second_id or "")
    expect(turn.locator(".version-label")).to_have_text("2/2")
    expect(turn.get_by_role("button", name="Next version")).to_be_disabled()

    turn.get_by_role("button", name="Previous version").click()
    expect(page.locator(".turn").last).to_have_attribute("id", first_id or "")
    expect(page.locator(".turn").last.locator(".version-label")).to_have_text("1/2")
    page.reload()
    expect(page.locator(".turn").last).to_have_attribute("id", first_id or "")
    expect(page.locator(".turn").last.locator(".version-label")).to_have_text("1/2")
    page.locator(".turn").last.get_by_role("button", name="Next version").click()
    expect(page.locator(".turn").last).to_have_attribute("id", second_id or "")
    expect(page.locator(".turn")).to_have_count(1)
    new_page.log.assert_clean()


def test_the_last_prompt_is_edited_in_place_and_sent_again_as_a_new_version(
    room_page: Page, new_page: PageFactory, viewport: dict[str, int]
) -> None:
    page = room_page
    signup(page, f"editor{viewport['width']}", PASSWORD)
    send(page, "Compare Rust and Go")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = last_turn_done(page)

    turn.get_by_role("button", name="Edit prompt").click()
    box = turn.get_by_role("textbox", name="Edit the prompt")
    expect(box).to_be_focused()
    expect(box).to_have_value("Compare Rust and Go")
    box.press("Escape")
    expect(box).to_have_count(0)
    expect(turn.locator(".turn-prompt")).to_be_visible()

    turn.get_by_role("button", name="Edit prompt").click()
    box = turn.get_by_role("textbox", name="Edit the prompt")
    first_id = turn.get_attribute("id") or ""
    box.fill("Compare Rust and Zig for embedded work")
    box.press("Enter")
    expect(page.locator(".turn").last).not_to_have_attribute("id", first_id, timeout=RUN_TIMEOUT_MS)
    turn = last_turn_done(page)
    expect(turn.locator(".turn-prompt")).to_contain_text("Compare Rust and Zig for embedded work")
    expect(turn.locator(".version-label")).to_have_text("2/2")
    page.reload()
    turn = last_turn_done(page)
    expect(turn.locator(".turn-prompt")).to_contain_text("Compare Rust and Zig")
    turn.get_by_role("button", name="Previous version").click()
    expect(page.locator(".turn").last.locator(".turn-prompt")).to_contain_text("Compare Rust and Go")
    new_page.log.assert_clean()


def flaky_panel(owner: User) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Flaky", slug="flaky", judge_model="fake/judge", writer_model="fake/writer"
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="demo/atlas")
    PanelMember.objects.create(panel=panel, position=2, model_id="fake/flaky")
    return panel


def test_retrying_a_failed_seat_keeps_the_others_then_the_judge_and_writer_run_again(
    room_page: Page, new_page: PageFactory, upstream: FakeUpstream, flaky: Flaky, viewport: dict[str, int]
) -> None:
    flaky.up = False
    page = room_page
    owner = User.objects.create_user(f"retrier{viewport['width']}", password=PASSWORD)
    panel = flaky_panel(owner)
    login(page, owner.username, PASSWORD)
    page.get_by_label("Panel").select_option(str(panel.pk))
    send(page, "Is the service up?")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = last_turn_done(page)
    expect(turn.locator("[data-section=final]")).to_contain_text("The first fused answer.")
    open_panel(turn)
    expect(turn.locator('[data-model="fake/flaky"]')).to_have_attribute("data-status", "failed")
    kept = turn.locator('[data-model="demo/atlas"] template').evaluate("t => t.content.textContent")
    judge_calls = len(upstream.requests_for("judge"))

    flaky.up = True
    turn.get_by_role("button", name="Retry failed seat (1)").click()
    expect(turn.locator("[data-section=final]")).to_contain_text(
        "Fused again, with every seat.", timeout=RUN_TIMEOUT_MS
    )
    expect(turn).to_have_attribute("data-turn-status", "done")
    open_panel(turn)
    expect(turn.locator('[data-model="fake/flaky"]')).to_have_attribute("data-status", "done")
    expect(turn.locator('[data-model="fake/flaky"] .column-body')).to_contain_text("Back up and answering")
    assert turn.locator('[data-model="demo/atlas"] template').evaluate("t => t.content.textContent") == kept
    assert len(upstream.requests_for("judge")) > judge_calls
    expect(turn.get_by_role("button", name=re.compile("^Retry failed"))).to_have_count(0)

    page.reload()
    turn = last_turn_done(page)
    expect(page.locator(".turn")).to_have_count(1)
    expect(turn.locator("[data-section=final]")).to_contain_text("Fused again, with every seat.")
    expect(turn.locator('[data-model="fake/flaky"]')).to_have_attribute("data-status", "done")
    # The 503 the first run got is the upstream's, not the page's: the browser saw no error.
    new_page.log.assert_clean()


def test_a_cancelled_turn_shows_the_tokens_that_streamed(
    room_page: Page, new_page: PageFactory, viewport: dict[str, int]
) -> None:
    page = room_page
    signup(page, f"canceller{viewport['width']}", PASSWORD)
    send(page, "Explain the CAP theorem in depth")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    turn = page.locator(".turn").last
    # Some hundreds of characters streamed into a column (its text's offset, which room.js keeps).
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.turn [id$=\"-text\"][data-offset]'))"
        ".some((text) => parseInt(text.dataset.offset, 10) > 300)",
        timeout=RUN_TIMEOUT_MS,
    )
    turn.locator("[data-cancel-turn]").click()
    expect(turn).to_have_attribute("data-turn-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    totals = turn.locator(".totals")
    expect(totals).to_contain_text("(estimated)")
    tokens = _tokens(totals.inner_text())
    assert tokens > 0, totals.inner_text()
    expect(totals).to_contain_text("$0")
    page.reload()
    totals = page.locator(".turn").last.locator(".totals")
    assert _tokens(totals.inner_text()) == tokens
    expect(totals).to_contain_text("(estimated)")
    new_page.log.assert_clean()


def _tokens(text: str) -> int:
    match = re.search(r"~?([\d,]+) tokens", text)
    assert match, text
    return int(match[1].replace(",", ""))
