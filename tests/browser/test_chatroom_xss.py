"""A model answer full of HTML and script payloads, streamed into the chatroom, stays inert text.

The answer comes from a real OpenAI-compatible server on loopback (configured as the endpoint ``fake``), so it
takes the whole path a hostile model's answer would: provider client, engine, recorder, socket deltas, the
Markdown swap when a column finishes, the fused answer, and the page rendered from the database on reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.panels.models import Panel, PanelMember
from tests.browser.conftest import LIVE_SERVER_DEMO_MODEL_DELAY, BrowserLog
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.live_server import LiveServer, live_server_start
from tests.security.payloads import EXFIL_HOST, xss_document

RUN_TIMEOUT_MS = 30_000
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def hostile_upstream() -> Iterator[str]:
    # The payloads come as the answer and as the model's reasoning (a folded block of its own), after a pause
    # that lets the page connect first, so they arrive as live deltas.
    script = ModelScript(text=xss_document(), chunk_words=3, reasoning=xss_document(), latency_s=1.0)
    upstream = FakeUpstream(scripts={"hostile": script})
    base_url = upstream.start_in_thread()
    yield base_url
    upstream.stop()


@pytest.fixture(scope="module")
def _daphne_process(
    django_db_setup: None, hostile_upstream: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """This module's server knows the hostile endpoint (settings are read from the environment at start)."""
    with live_server_start(
        settings_module="fusionroom.settings",
        ready_path="/accounts/login/",
        log_dir=Path(tmp_path_factory.mktemp("daphne-xss")),
        env={
            "DEMO_MODEL_DELAY": str(LIVE_SERVER_DEMO_MODEL_DELAY),
            "FUSIONROOM_ENDPOINTS": f"fake={hostile_upstream}",
        },
    ) as server:
        yield server


def hostile_panel(owner: User) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Hostile", slug="hostile", judge_model="demo/judge", writer_model="fake/hostile"
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="fake/hostile")
    PanelMember.objects.create(panel=panel, position=2, model_id="demo/atlas")
    return panel


def assert_nothing_ran(page: Page, log: BrowserLog) -> None:
    assert log.dialogs == []
    assert page.evaluate("() => window.__xss ?? null") is None
    assert [message for message in log.console_messages if "xss" in message.lower()] == []
    assert [url for url in log.requests if EXFIL_HOST in url] == []
    assert log.external_requests() == []


def test_a_hostile_answer_streams_and_renders_as_inert_text(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    owner = User.objects.create_user("mallory-target", password=PASSWORD)
    panel = hostile_panel(owner)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()

    page.get_by_label("Panel").select_option(str(panel.pk))
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("Summarise <script>alert('xss')</script> for me")
    box.press("Enter")

    turn = page.locator(".turn").first
    expect(turn).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    hostile = turn.locator('[data-model="fake/hostile"]')
    expect(hostile).to_have_attribute("data-status", "done")
    # The payloads arrived (as text), and none of them became an element.
    expect(hostile.locator(".column-body")).to_contain_text("alert(")
    expect(hostile.locator(".reasoning")).to_be_visible()
    expect(hostile.locator(".reasoning-text")).to_contain_text("alert(")
    expect(turn.locator("[data-section=final]")).to_contain_text("alert(")
    for selector in (
        "script",
        "img",
        "svg",
        "iframe",
        "object",
        "embed",
        "[onerror]",
        "[onload]",
        "[onclick]",
    ):
        where = f".column-body {selector}, .reasoning {selector}, [data-section=final] {selector}"
        assert turn.locator(where).count() == 0, selector
    hrefs = turn.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(href.startswith(("http://", "https://", "mailto:", "#", "/")) for href in hrefs), hrefs
    assert_nothing_ran(page, page_log)

    page.reload()
    expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "done")
    expect(page.locator('.turn [data-model="fake/hostile"] .column-body')).to_contain_text("alert(")
    assert_nothing_ran(page, page_log)
