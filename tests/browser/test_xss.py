"""The XSS corpus in a real browser: nothing runs, nothing is fetched from elsewhere, and the CSP holds.

The corpus (tests/security/payloads.py) goes through the app's ``|markdown`` filter inside the app's layout,
served by the live server (``/__test__/markdown/``). It is checked twice: with the Content-Security-Policy off
in the browser (the sanitiser alone must hold) and with it on (the page loads without a single violation).
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

from tests.browser.conftest import BrowserLog, LiveServer, PageFactory
from tests.security.payloads import EXFIL_HOST, RENDERED_ATTRIBUTES, RENDERED_TAGS, XSS_PAYLOADS

# The same allow-list as the string audit, applied to the DOM the browser built (mutation XSS shows up here).
_DOM_AUDIT = """
([allowedTags, allowedAttributes]) => {
  const tags = new Set(allowedTags);
  const attributes = new Set(allowedAttributes);
  const findings = [];
  for (const block of document.querySelectorAll("section[data-block]")) {
    const where = block.dataset.block;
    for (const el of block.querySelectorAll("*")) {
      if (!tags.has(el.localName)) findings.push(`${where}: <${el.localName}>`);
      for (const attr of el.attributes) {
        if (!attributes.has(attr.name)) findings.push(`${where}: ${attr.name} on <${el.localName}>`);
      }
      if (el.localName === "a" && el.hasAttribute("href")) {
        const protocol = new URL(el.getAttribute("href"), location.href).protocol;
        if (!["http:", "https:", "mailto:"].includes(protocol)) findings.push(`${where}: ${protocol} link`);
      }
    }
  }
  return findings;
}
"""


def _open_corpus(page: Page) -> list[str]:
    """Load the corpus, audit the DOM as parsed, then give every handler its chance to fire."""
    page.goto("/__test__/markdown/")
    # Let every image, frame or handler that could fire do so: no request for half a second.
    page.wait_for_load_state("networkidle")
    blocks = page.locator("section[data-block]")
    assert blocks.count() == len(XSS_PAYLOADS)
    findings: list[str] = page.evaluate(_DOM_AUDIT, [sorted(RENDERED_TAGS), sorted(RENDERED_ATTRIBUTES)])
    # Handlers that need a person: hover every block, focus and press every button there is.
    for block in blocks.all():
        block.hover()
    for button in page.locator("section[data-block] button").all():
        button.focus()
        button.click()
    page.wait_for_load_state("networkidle")
    return findings


def _assert_nothing_ran(page: Page, log: BrowserLog) -> None:
    assert log.dialogs == []
    assert page.evaluate("() => window.__xss ?? null") is None
    assert [message for message in log.console_messages if "xss" in message.lower()] == []
    assert [url for url in log.requests if EXFIL_HOST in url] == []
    assert log.external_requests() == []


def test_no_payload_runs_or_fetches_anything_even_without_the_csp(new_page: PageFactory) -> None:
    page = new_page(bypass_csp=True, permissions=["clipboard-read", "clipboard-write"])
    assert _open_corpus(page) == []
    _assert_nothing_ran(page, new_page.log)
    assert new_page.log.page_errors == []


def test_the_corpus_page_loads_under_the_csp_without_a_single_violation(
    page: Page, page_log: BrowserLog
) -> None:
    _open_corpus(page)
    _assert_nothing_ran(page, page_log)
    page_log.assert_clean()


def test_the_payloads_stay_readable_as_text(page: Page) -> None:
    page.goto("/__test__/markdown/")
    script_block = page.locator('section[data-block="script tag"]')
    assert script_block.inner_text().startswith("<script>alert('xss')")
    image_block = page.locator('section[data-block="markdown image"]')
    assert "the alt text" in image_block.inner_text()
    assert page.locator("section[data-block] img").count() == 0


_PROBE = """
async ({foreignSocket, ownSocket}) => {
  const seen = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    seen.push([e.effectiveDirective, e.blockedURI]);
  });
  const script = document.createElement("script");
  script.textContent = "window.__inline = 1";
  document.body.append(script);
  const image = new Image();
  image.src = "http://exfil.invalid/pixel.png";
  document.body.append(image);
  const styled = document.createElement("p");
  styled.setAttribute("style", "color: red");
  document.body.append(styled);
  try { await fetch("http://exfil.invalid/collect"); } catch (e) { /* blocked */ }
  try { new WebSocket(foreignSocket); } catch (e) { /* blocked */ }
  const own = new WebSocket(ownSocket);
  await new Promise((resolve) => setTimeout(resolve, 300));
  own.close();
  return {seen, inline: window.__inline ?? null};
}
"""


def test_the_csp_blocks_inline_script_styles_foreign_images_and_connections(
    page: Page, page_log: BrowserLog, daphne_server: LiveServer
) -> None:
    page.goto("/accounts/login/")
    own_socket = f"{daphne_server.ws_url}/ws/no-such-socket/"
    result: dict[str, Any] = page.evaluate(
        _PROBE, {"foreignSocket": "ws://127.0.0.1:9/", "ownSocket": own_socket}
    )
    assert result["inline"] is None
    blocked = {(directive, uri) for directive, uri in result["seen"]}
    assert ("script-src-elem", "inline") in blocked
    assert ("style-src-attr", "inline") in blocked
    assert ("img-src", "http://exfil.invalid/pixel.png") in blocked
    assert ("connect-src", "http://exfil.invalid/collect") in blocked
    assert ("connect-src", "ws://127.0.0.1:9/") in blocked
    # The app's own WebSocket origin is allowed by connect-src 'self'.
    assert not [uri for directive, uri in blocked if uri.startswith(daphne_server.ws_url)]
    # The blocked image shows up as a request that failed on the policy, never as a fetch.
    assert [failure for failure in page_log.failed_requests if EXFIL_HOST in failure] == [
        "GET http://exfil.invalid/pixel.png: csp"
    ]


def test_no_page_of_the_app_can_be_framed(page: Page, page_log: BrowserLog) -> None:
    page.goto("/accounts/signup/")
    page.evaluate(
        """() => new Promise((resolve) => {
          const frame = document.createElement("iframe");
          frame.src = "/accounts/login/";
          frame.addEventListener("load", resolve);
          document.body.append(frame);
        })"""
    )
    framed = [frame for frame in page.frames if frame != page.main_frame]
    assert len(framed) == 1
    assert "Log in" not in framed[0].content()
    assert any("frame-ancestors" in error or "X-Frame-Options" in error for error in page_log.console_errors)
