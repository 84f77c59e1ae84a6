"""A model answer full of HTML and script payloads, streamed into the chatroom, stays inert text.

The answer comes from a real OpenAI-compatible server on loopback (configured as the endpoint ``fake``), so it
takes the whole path a hostile model's answer would: provider client, engine, recorder, socket deltas, the
live Markdown rendering in the browser (static/js/render.js) while it streams, the server's Markdown swapped
in when a column finishes, the fused answer, and the page rendered from the database on reload. The corpus is
also streamed cut every three characters (inside tags, entities, link targets, Markdown markers), and the page
is audited at every state it passes through, including the fenced payloads the browser highlights while they
stream (tests/browser/test_live_markdown.py renders every prefix of every payload directly).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.panels.models import Panel, PanelMember
from tests.browser.conftest import LIVE_SERVER_DEMO_MODEL_DELAY, BrowserLog
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.live_server import LiveServer, live_server_start
from tests.security.payloads import EXFIL_HOST, RENDERED_ATTRIBUTES, RENDERED_TAGS, XSS_PAYLOADS, xss_document

RUN_TIMEOUT_MS = 60_000
PASSWORD = "correct horse battery staple"
# Characters per streamed chunk when the corpus is cut mid-token.
CUT = 3


SPLIT_PIECES = [xss_document()[start : start + CUT] for start in range(0, len(xss_document()), CUT)]
# The split stream waits halfway until the test has looked at it.
SPLIT_HOLD = threading.Event()


@pytest.fixture(scope="module")
def hostile_upstream() -> Iterator[str]:
    # The payloads come as the answer and as the model's reasoning (a folded block of its own), after a pause
    # that lets the page connect first, so they arrive as live deltas.
    script = ModelScript(text=xss_document(), chunk_words=3, reasoning=xss_document(), latency_s=1.0)
    # The same corpus cut every few characters, paced so the page renders many partial texts on the way.
    split = ModelScript(
        pieces=SPLIT_PIECES,
        tokens_per_s=1500,
        reasoning=xss_document(),
        latency_s=1.0,
        holds={len(SPLIT_PIECES) // 2: SPLIT_HOLD},
    )
    upstream = FakeUpstream(scripts={"hostile": script, "split": split})
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


def hostile_panel(owner: User, model: str = "fake/hostile") -> Panel:
    panel = Panel.objects.create(
        owner=owner, name="Hostile", slug="hostile", judge_model="demo/judge", writer_model=model
    )
    PanelMember.objects.create(panel=panel, position=1, model_id=model)
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
    # Shown (not the hidden placeholder of a seat that never reasoned), though folded with the panel.
    assert hostile.locator(".reasoning").evaluate("fold => !fold.hidden")
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


# Installed before any script of the page: every state of the conversation is audited as it appears (a partial
# text is on screen for a few milliseconds only), and every CSP violation is kept.
_WATCH = """
(() => {
  const TAGS = new Set(%(tags)s);
  const ATTRIBUTES = new Set(%(attributes)s);
  const NEVER = new Set(
    ["script", "img", "iframe", "style", "object", "embed", "frame", "base", "meta", "link"],
  );
  // highlight.js's classes, the only ones its spans inside code may keep (static/js/render.js).
  const HLJS_CLASS = /^hljs-[a-z][a-z_-]*$/;
  window.__findings = [];
  window.__violations = [];
  window.__audits = 0;
  window.__highlighted = 0;
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
  });
  function audit(turns) {
    window.__audits += 1;
    for (const el of turns.querySelectorAll("*")) {
      const name = el.localName;
      if (NEVER.has(name)) window.__findings.push(`<${name}>`);
      for (const attr of el.attributes) {
        if (attr.name.startsWith("on")) window.__findings.push(`${attr.name} on <${name}>`);
      }
      // Inside a rendered or streaming text, only what the Markdown renderers may emit.
      if (!el.parentElement || !el.parentElement.closest(".markdown, .stream")) continue;
      if (!TAGS.has(name)) window.__findings.push(`rendered <${name}>`);
      for (const attr of el.attributes) {
        if (!ATTRIBUTES.has(attr.name)) window.__findings.push(`rendered ${attr.name} on <${name}>`);
      }
      if (name === "a" && el.hasAttribute("href")) {
        const protocol = new URL(el.getAttribute("href"), location.href).protocol;
        if (!["http:", "https:", "mailto:"].includes(protocol)) window.__findings.push(`${protocol} link`);
      }
      // Live code coloured by highlight.js: a bare span, nothing inside it but more such spans and text.
      if (el.closest(".stream, [data-offset]") && name === "span" && el.closest("pre code")) {
        const classes = Array.from(el.classList);
        if (classes.some((cls) => HLJS_CLASS.test(cls))) window.__highlighted += 1;
        if (classes.some((cls) => !HLJS_CLASS.test(cls))) window.__findings.push(`class ${el.className}`);
        if (el.attributes.length > 1 || (el.attributes.length === 1 && !el.hasAttribute("class"))) {
          window.__findings.push(`attributes on a highlighted span: ${el.outerHTML}`);
        }
      }
    }
  }
  new MutationObserver(() => {
    const turns = document.getElementById("turns");
    if (turns) audit(turns);
  }).observe(document, { childList: true, subtree: true });
})();
"""


def test_the_corpus_cut_mid_token_across_chunks_never_runs_at_any_point_of_the_stream(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    page.add_init_script(_WATCH % {"tags": sorted(RENDERED_TAGS), "attributes": sorted(RENDERED_ATTRIBUTES)})
    owner = User.objects.create_user("mallory-split", password=PASSWORD)
    panel = hostile_panel(owner, "fake/split")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()

    page.get_by_label("Panel").select_option(str(panel.pk))
    box = page.get_by_role("textbox", name="Prompt")
    box.fill("Summarise this page for me")
    box.press("Enter")

    turn = page.locator(".turn").first
    split = turn.locator('[data-model="fake/split"]')
    try:
        # Rendered while it streams: half the payloads' headings are headings before the seat is done.
        expect(split.locator(".column-body h2").nth(len(XSS_PAYLOADS) // 3)).to_be_visible(
            timeout=RUN_TIMEOUT_MS
        )
        assert split.get_attribute("data-status") == "streaming"
    finally:
        SPLIT_HOLD.set()
    expect(turn).to_have_attribute("data-turn-status", "done", timeout=RUN_TIMEOUT_MS)
    expect(split).to_have_attribute("data-status", "done")
    # Every chunk arrived at its place: the whole corpus, each payload under its own heading.
    expect(split.locator(".column-body h2")).to_have_count(len(XSS_PAYLOADS))
    expect(turn.locator("[data-section=final] h2")).to_have_count(len(XSS_PAYLOADS))
    expect(split.locator(".reasoning-text h2")).to_have_count(len(XSS_PAYLOADS))

    # The page was audited at many points of the stream, not once at the end, with fenced code highlighted
    # live (the payloads in a known language).
    assert page.evaluate("() => window.__audits") > 20
    assert page.evaluate("() => window.__highlighted") > 0
    assert page.evaluate("() => window.__findings") == []
    assert page.evaluate("() => window.__violations") == []
    for selector in ("script", "img", "svg", "iframe", "object", "embed", "style", "[onerror]", "[onload]"):
        assert turn.locator(selector).count() == 0, selector
    assert_nothing_ran(page, page_log)
    page_log.assert_clean()
