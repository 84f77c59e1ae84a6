"""Markdown renders in the browser while it streams, exactly as the server renders it once finished.

static/js/render.js (markdown-it with raw HTML off, then DOMPurify with the server's allow-list) renders each
live text from its source as deltas arrive. These tests prove: the browser's rendering is the server's
(apps/core/markdown.py) for every sample and every XSS payload, so nothing jumps when the server's HTML
replaces the live one; every prefix of every payload renders to allowed, inert markup; fenced code is
coloured in the browser (highlight.js) with the colours the server's Pygments classes have, in every theme;
Markdown (bold, heading, list, table, coloured code) is rendered while a seat is still streaming, in a
column, its reasoning and the fused answer, live, after a reload and on the shared page; and the layout does
not move when the finished HTML arrives, on a laptop and on a phone.

The models are scripted on a loopback OpenAI-compatible server (tests/fakes/upstream.py) that holds a stream
before a chosen chunk until the test lets it go, so "still streaming" is a fact, not a race.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.chat import services
from apps.chat.models import Conversation
from apps.core.markdown import render_markdown
from apps.panels.models import Panel, PanelMember
from tests.browser.conftest import LIVE_SERVER_DEMO_MODEL_DELAY, BrowserLog, PageFactory
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.live_server import LiveServer, live_server_start
from tests.security.payloads import EXFIL_HOST, RENDERED_ATTRIBUTES, RENDERED_TAGS, XSS_PAYLOADS, xss_document

PASSWORD = "correct horse battery staple"
RUN_TIMEOUT_MS = 30_000
LAPTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}

SAMPLES: dict[str, str] = {
    "emphasis": "Plain, **bold**, *em*, ***both***, ~~struck~~, `code` and a\nsoft break, a hard  \nbreak.",
    "headings": "# One\n\n## Two\n\n### Three\n\n#### Four\n\n##### Five\n\n###### Six\n\nSetext\n===",
    "lists": "- a\n- b\n  - nested\n    1. deep\n\n3. three\n4. four\n\n* [ ] no task\n* loose\n\n  item",
    "table": "| left | centre | right | none |\n|:--|:-:|--:|---|\n| 1 | **2** | `3` | [4](/four) |",
    "fenced code": "```python extra words\ndef f(x):\n    return '<b>' + x\n```\n\n```\nno language\n```",
    "indented code": "Text\n\n    indented <code>\n    block",
    "unclosed fence": "```js\nconst a = 1;\nconst b = `<i>`;",
    "quote and rule": "> quoted **text**\n> - with a list\n\n---\n\n***",
    "links": (
        "[http](http://a.example/p?q=1&r=2) [https](https://b.example/ 'Title') [mail](mailto:me@c.example) "
        "[relative](/x/y) [fragment](#top) [ftp](ftp://d.example/) <https://auto.example/path> "
        "<me@e.example> "
        "[ref][r]\n\n[r]: https://ref.example/"
    ),
    "images": "![alt *text*](https://img.example/a.png) ![](https://img.example/b.png) [![x](/y.png)](/z)",
    "entities and html": "&copy; &amp; &#60;b&#62; <b>bold?</b> <!-- comment --> a < b > c & d",
    "long language": "```" + "l" * 60 + "\nx\n```",
    "unicode": "Ünïcödé **😀 emoji** 漢字 — “quotes” … and ‮ override",
    "deep nesting": ">" * 30 + " deep",
    "html block": "<div>\n*not markdown*\n</div>\n\n<details><summary>s</summary>x</details>",
}

# Both renderings, as trees the browser built: tag, attributes (sorted) and children; code is compared by its
# text only (the server colours it with Pygments' classes, the browser with highlight.js's, which changes no
# size; their colours are compared below).
_COMPARE = """
([samples, serverHtml]) => {
  function tree(node) {
    if (node.nodeType === Node.TEXT_NODE) return node.data;
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    const attrs = Array.from(node.attributes, (a) => `${a.name}=${a.value}`).sort();
    if (node.localName === "code" && node.parentElement && node.parentElement.localName === "pre") {
      // Pygments ends the last line of a highlighted block with a newline even when the fence was left open
      // (a text cut off mid-block); a pre's last newline adds no line, so it is no difference a reader sees.
      return [node.localName, attrs, [node.textContent.replace(/\\n$/, "")]];
    }
    return [node.localName, attrs, Array.from(node.childNodes, tree).filter((n) => n !== null)];
  }
  const differences = {};
  for (const [name, source] of Object.entries(samples)) {
    const client = document.createElement("div");
    client.append(window.FusionMarkdown.fragment(source));
    const server = document.createElement("template");
    server.innerHTML = serverHtml[name];
    const a = JSON.stringify(Array.from(client.childNodes, tree));
    const b = JSON.stringify(Array.from(server.content.childNodes, tree));
    if (a !== b) differences[name] = {client: a, server: b};
  }
  return differences;
}
"""


def _server_html(samples: dict[str, str]) -> dict[str, str]:
    return {name: str(render_markdown(text)) for name, text in samples.items()}


def test_the_browser_renders_every_sample_exactly_as_the_server_does(
    page: Page, page_log: BrowserLog
) -> None:
    page.goto("/__test__/live-markdown/")
    samples = {**SAMPLES, **{f"xss: {name}": text for name, text in XSS_PAYLOADS.items()}}
    samples["xss document"] = xss_document()
    assert page.evaluate(_COMPARE, [samples, _server_html(samples)]) == {}
    page_log.assert_clean()


# --- Colours of highlighted code ---------------------------------------------------------------------------

HIGHLIGHTED = '''```python
import os

@cache
def area(radius: float) -> float:
    """Doc."""
    # a comment
    if radius is None:
        return 0
    print("r", 42, True)
    return 3.14 * radius ** 2
```'''
# Tokens of each kind both highlighters colour: keyword, decorator, function name, builtin, docstring,
# comment, constant, string, integer, float.
COLOURED_TOKENS = [
    "import", "@cache", "def", "area", "float", '"""Doc."""', "# a comment", "if", "is", "None", "return",
    "print", '"r"', "42", "True", "3.14",
]  # fmt: skip

# For each token, the computed colour of its first character in the browser's rendering and in the server's
# (both in the page, side by side), and the code's own colour.
_TOKEN_COLOURS = """
([source, serverHtml, tokens]) => {
  const sandbox = document.getElementById("sandbox");
  const client = document.createElement("div");
  client.append(window.FusionMarkdown.fragment(source));
  const server = document.createElement("div");
  server.innerHTML = serverHtml;
  sandbox.replaceChildren(client, server);
  function colourAt(root, token) {
    const code = root.querySelector("pre code");
    let index = code.textContent.indexOf(token);
    if (index < 0) return null;
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (index < node.data.length) return getComputedStyle(node.parentElement).color;
      index -= node.data.length;
    }
    return null;
  }
  const plain = getComputedStyle(client.querySelector("pre code")).color;
  return Object.fromEntries(
    tokens.map((token) => [token, {client: colourAt(client, token), server: colourAt(server, token), plain}]),
  );
}
"""


@pytest.mark.parametrize("theme", ["light", "dark", "system dark"])
def test_the_browser_colours_code_as_the_server_does_in_every_theme(
    page: Page, page_log: BrowserLog, theme: str
) -> None:
    if theme == "system dark":
        # No choice made (no data-theme): the system's dark scheme applies.
        page.emulate_media(color_scheme="dark")
    page.goto("/__test__/live-markdown/")
    if theme != "system dark":
        page.evaluate("(theme) => { document.documentElement.dataset.theme = theme; }", theme)
    colours = page.evaluate(_TOKEN_COLOURS, [HIGHLIGHTED, str(render_markdown(HIGHLIGHTED)), COLOURED_TOKENS])
    assert {token: c for token, c in colours.items() if c["client"] != c["server"]} == {}
    assert [token for token, c in colours.items() if c["client"] == c["plain"]] == []
    page_log.assert_clean()


def test_code_without_a_language_the_highlighter_knows_stays_plain(page: Page, page_log: BrowserLog) -> None:
    page.goto("/__test__/live-markdown/")
    inner = page.evaluate(
        """(sources) => sources.map((source) => {
          const box = document.createElement("div");
          box.append(window.FusionMarkdown.fragment(source));
          return box.querySelector("pre code").innerHTML;
        })""",
        ["```\nif x: return 1\n```", "```nosuchlanguage\nif x: return 1\n```", "    if x: return 1"],
    )
    assert inner == ["if x: return 1\n"] * 3
    page_log.assert_clean()


# --- Every prefix of every payload -------------------------------------------------------------------------

_PREFIXES = """
([payloads, step, allowedTags, allowedAttributes]) => {
  const tags = new Set(allowedTags);
  const attributes = new Set(allowedAttributes);
  const sandbox = document.getElementById("sandbox");
  const findings = [];
  let renders = 0;
  for (const [name, text] of Object.entries(payloads)) {
    const chars = Array.from(text);
    for (let end = Math.min(step, chars.length); ; end = Math.min(end + step, chars.length)) {
      sandbox.replaceChildren(window.FusionMarkdown.fragment(chars.slice(0, end).join("")));
      renders += 1;
      for (const el of sandbox.querySelectorAll("*")) {
        if (!tags.has(el.localName)) findings.push(`${name}[:${end}]: <${el.localName}>`);
        for (const attr of el.attributes) {
          if (!attributes.has(attr.name)) findings.push(`${name}[:${end}]: ${attr.name}`);
        }
        if (el.localName === "a" && el.hasAttribute("href")) {
          const protocol = new URL(el.getAttribute("href"), location.href).protocol;
          if (!["http:", "https:", "mailto:"].includes(protocol)) findings.push(`${name}: ${protocol}`);
        }
      }
      if (end === chars.length) break;
    }
  }
  return {findings, renders};
}
"""


def test_every_prefix_of_every_payload_renders_to_inert_allowed_markup(
    page: Page, page_log: BrowserLog
) -> None:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content" in message.text else None)
    page.goto("/__test__/live-markdown/")
    payloads = {**XSS_PAYLOADS, "document": xss_document()}
    result = page.evaluate(_PREFIXES, [payloads, 3, sorted(RENDERED_TAGS), sorted(RENDERED_ATTRIBUTES)])
    assert result["findings"] == []
    assert result["renders"] > 3000
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__xss ?? null") is None
    assert [url for url in page_log.requests if EXFIL_HOST in url] == []
    assert violations == []
    page_log.assert_clean()


# --- Streaming in the chatroom -----------------------------------------------------------------------------

ANSWER = (
    "### A heading\n\nSome **bold words** and *emphasis*.\n\n- first item\n- second item\n\n"
    "| key | value |\n|-----|------:|\n| a | 1 |\n\n```python\ndef f():\n    return 1\n```\n\nThe end."
)
REASONING = "Weigh **latency** first:\n\n1. measure\n2. compare"
FINAL = "## Fused\n\nThe **panel** agrees:\n\n- one\n- two\n\n```sql\nSELECT 1;\n```\n\nDone."


def cut(text: str, size: int = 4) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def _daphne_process(
    django_db_setup: None, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The browser tests' server (with its test pages) that also knows the loopback models as ``fake/...``."""
    with live_server_start(
        settings_module="tests.browser.server_settings",
        ready_path="/accounts/login/",
        log_dir=Path(tmp_path_factory.mktemp("daphne-live-markdown")),
        env={
            "DEMO_MODEL_DELAY": str(LIVE_SERVER_DEMO_MODEL_DELAY),
            "FUSIONROOM_ENDPOINTS": f"fake={upstream.base_url}",
        },
    ) as server:
        yield server


class Held:
    """A scripted model whose answer streams in chunks of four characters, then waits before its last chunk
    (a newline, which changes nothing rendered) until ``release()``; so the whole answer is on the page while
    the model is still streaming."""

    def __init__(self, upstream: FakeUpstream, name: str, text: str, reasoning: str | None = None) -> None:
        self.text = text
        self.gate = threading.Event()
        pieces = [*cut(text), "\n"]
        upstream.script(
            name,
            ModelScript(
                pieces=pieces, reasoning=reasoning, tokens_per_s=400, holds={len(pieces) - 1: self.gate}
            ),
        )

    def release(self) -> None:
        self.gate.set()


def _conversation_open(page: Page, username: str) -> Conversation:
    owner = User.objects.create_user(username, password=PASSWORD)
    panel = Panel.objects.create(
        owner=owner, name="Live", slug="live", judge_model="demo/judge", writer_model="fake/writer"
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="fake/md")
    conversation = services.conversation_create(owner=owner, title="Live Markdown")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    page.goto(f"/c/{conversation.pk}/")
    expect(page.locator(".conversation")).to_have_attribute("data-socket", "open")
    page.get_by_label("Panel").select_option(str(panel.pk))
    return conversation


def _send(page: Page, prompt: str) -> None:
    box = page.get_by_role("textbox", name="Prompt")
    box.fill(prompt)
    box.press("Enter")


# Where everything inside a box sits, relative to the box: tag, classes, position and size. Highlighting spans
# inside code are left out (the server's only difference: colour).
_LAYOUT = """
(selector) => {
  const box = document.querySelector(selector);
  const origin = box.getBoundingClientRect();
  const rows = [["box", "", 0, 0, Math.round(origin.width), Math.round(origin.height)]];
  for (const el of box.querySelectorAll("*")) {
    if (el.parentElement.closest("code")) continue;
    const r = el.getBoundingClientRect();
    rows.push([el.localName, el.className, Math.round(r.left - origin.left), Math.round(r.top - origin.top),
               Math.round(r.width), Math.round(r.height)]);
  }
  return rows;
}
"""

# The Markdown source render.js holds for the live text under a selector (null once the server's HTML is in).
_SOURCE = """
(selector) => {
  const element = document.querySelector(selector);
  const source = element ? window.FusionMarkdown.source(element) : undefined;
  return source === undefined ? null : source;
}
"""

_COLOUR = "(el) => getComputedStyle(el).color"

COLUMN = '[data-model="fake/md"]'
COLUMN_TEXT = f"{COLUMN} .column-body > [data-offset]"
FINAL_SECTION = "[data-section=final]"


def _wait_for_source(page: Page, selector: str, text: str) -> None:
    page.wait_for_function(f"([s, t]) => ({_SOURCE})(s) === t", arg=[selector, text], timeout=RUN_TIMEOUT_MS)
    # One more throttled render after the last delta.
    page.wait_for_timeout(300)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_markdown_renders_while_it_streams_and_nothing_moves_when_the_answer_is_finished(
    new_page: PageFactory, upstream: FakeUpstream, viewport: dict[str, int]
) -> None:
    page = new_page(viewport=viewport)
    seat = Held(upstream, "md", ANSWER, reasoning=REASONING)
    writer = Held(upstream, "writer", FINAL)
    _conversation_open(page, f"reader-{viewport['width']}")
    _send(page, "Which queue?")
    try:
        column = page.locator(COLUMN)
        body = column.locator(".column-body")
        # The column, still streaming, shows its Markdown rendered: bold, heading, list, table, code.
        expect(body.locator("strong")).to_have_text("bold words", timeout=RUN_TIMEOUT_MS)
        expect(body.locator("h3")).to_have_text("A heading")
        expect(body.locator("li")).to_have_count(2)
        expect(body.locator("table th.align-right")).to_have_text("value")
        expect(body.locator(".codeblock .codeblock-lang")).to_have_text("python")
        _wait_for_source(page, COLUMN_TEXT, ANSWER)
        expect(column).to_have_attribute("data-status", "streaming")
        # Its reasoning too (opened by the reader, and still open after the seat finishes).
        column.locator(".reasoning summary").click()
        expect(column.locator(".reasoning-text strong")).to_have_text("latency")
        expect(column.locator(".reasoning-text ol li")).to_have_count(2)
        live_body = page.evaluate(_LAYOUT, f"{COLUMN} .column-body")
        live_reasoning = page.evaluate(_LAYOUT, f"{COLUMN} .reasoning-text")
        # The code is coloured while it streams: its keyword in a colour of its own, not the code's.
        keyword = body.locator(".codeblock .highlight .hljs-keyword").first
        expect(keyword).to_have_text("def")
        live_keyword = keyword.evaluate(_COLOUR)
        assert live_keyword != keyword.evaluate("(el) => getComputedStyle(el.closest('code')).color")

        seat.release()
        expect(column).to_have_attribute("data-status", "done", timeout=RUN_TIMEOUT_MS)
        # The server's HTML is in (Pygments colours the code, the keyword as it was) and everything sits where
        # it sat.
        expect(column.locator(".codeblock .highlight span.k").first).to_have_text("def")
        assert column.locator(".codeblock .highlight span.k").first.evaluate(_COLOUR) == live_keyword
        assert page.evaluate(_SOURCE, COLUMN_TEXT) is None
        # The panel folds once the writer starts (the fused answer comes first); measured as the reader sees
        # it when they open the fold again.
        fold = page.locator("details.panel-answers").first
        expect(fold).not_to_have_attribute("open", "", timeout=RUN_TIMEOUT_MS)
        fold.locator("> summary").click()
        expect(column.locator(".column-body")).to_be_visible()
        assert page.evaluate(_LAYOUT, f"{COLUMN} .column-body") == live_body
        expect(column.locator(".reasoning")).to_have_attribute("open", "")
        assert page.evaluate(_LAYOUT, f"{COLUMN} .reasoning-text") == live_reasoning

        # The fused answer, the same way.
        final = page.locator(FINAL_SECTION)
        expect(final.locator("strong")).to_have_text("panel", timeout=RUN_TIMEOUT_MS)
        expect(final.locator("h2")).to_have_text("Fused")
        _wait_for_source(page, f"{FINAL_SECTION} [data-offset]", FINAL)
        expect(page.locator(".turn").first).to_have_attribute("data-turn-status", "running")
        live_final = page.evaluate(_LAYOUT, f"{FINAL_SECTION} .markdown")
        writer.release()
        expect(page.locator(".turn").first).to_have_attribute(
            "data-turn-status", "done", timeout=RUN_TIMEOUT_MS
        )
        assert page.evaluate(_LAYOUT, f"{FINAL_SECTION} .markdown") == live_final
    finally:
        seat.release()
        writer.release()
    new_page.log.assert_clean()


def test_a_running_turn_renders_its_markdown_after_a_reload_and_on_the_shared_page(
    new_page: PageFactory, upstream: FakeUpstream
) -> None:
    page = new_page()
    seat = Held(upstream, "md", ANSWER, reasoning=REASONING)
    writer = Held(upstream, "writer", FINAL)
    conversation = _conversation_open(page, "returning-reader")
    _send(page, "Which queue?")
    try:
        _wait_for_source(page, COLUMN_TEXT, ANSWER)
        page.reload()
        # The page comes back with the text so far (a snapshot), rendered; deltas still apply by offset.
        body = page.locator(f"{COLUMN} .column-body")
        expect(body.locator("strong")).to_have_text("bold words")
        expect(body.locator("table")).to_be_visible()
        _wait_for_source(page, COLUMN_TEXT, ANSWER)

        # Someone with a share link sees the running turn's text rendered too (no socket there: as saved).
        _link, token = services.share_link_create(conversation=conversation)
        visitor = new_page(viewport=PHONE)
        visitor.goto(f"/s/{token}/")
        shared = visitor.locator(f"{COLUMN} .column-body")
        expect(shared.locator("h3")).to_have_text("A heading")
        expect(shared.locator("strong")).to_have_text("bold words")
        expect(shared.locator(".codeblock pre code")).to_contain_text("return 1")

        seat.release()
        writer.release()
        expect(page.locator(".turn").first).to_have_attribute(
            "data-turn-status", "done", timeout=RUN_TIMEOUT_MS
        )
        expect(page.locator(f"{FINAL_SECTION} .markdown strong")).to_have_text("panel")
        # The finished turn on the shared page is the server's rendering, the same markup.
        visitor.reload()
        expect(visitor.locator(f"{FINAL_SECTION} .markdown strong")).to_have_text("panel")
        expect(visitor.locator(f"{COLUMN} .column-body .codeblock .highlight span").first).to_be_attached()
    finally:
        seat.release()
        writer.release()
    for log in new_page.logs:
        log.assert_clean()
