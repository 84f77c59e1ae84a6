"""Model and user text cannot put active content in a page: every payload of the corpus comes out inert.

The audit parses the rendered HTML as a browser's tokenizer would and lists anything that could run script,
load a resource or restyle the page. tests/browser/test_xss.py checks the same corpus in a real browser.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import pytest

from apps.core.markdown import render_markdown, sanitize_html
from tests.security.payloads import (
    EXFIL_HOST,
    EXFIL_URL,
    RENDERED_ATTRIBUTES,
    RENDERED_TAGS,
    XSS_PAYLOADS,
    xss_document,
)

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.findings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in RENDERED_TAGS:
            self.findings.append(f"tag <{tag}>")
        for name, value in attrs:
            if name not in RENDERED_ATTRIBUTES:
                self.findings.append(f"attribute {name}={value!r} on <{tag}>")
            if name == "href" and value is not None:
                # Browsers drop ASCII whitespace and control characters inside a scheme before reading it.
                compact = re.sub(r"[\x00-\x20]", "", value)
                scheme = _SCHEME.match(compact)
                if scheme and scheme.group(1).lower() not in {"http", "https", "mailto"}:
                    self.findings.append(f"href scheme {scheme.group(1).lower()!r} on <{tag}>")
            if name == "rel" and tag == "a" and value != "noopener noreferrer nofollow":
                self.findings.append(f"rel={value!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def audit(html: str) -> list[str]:
    parser = _Audit()
    parser.feed(html)
    parser.close()
    return parser.findings


@pytest.mark.parametrize("name", list(XSS_PAYLOADS))
def test_each_payload_renders_inert(name: str) -> None:
    html = render_markdown(XSS_PAYLOADS[name])
    assert audit(html) == [], html
    assert f"src={EXFIL_URL}" not in html and f'src="{EXFIL_URL}"' not in html


def test_the_whole_corpus_at_once_renders_inert() -> None:
    assert audit(render_markdown(xss_document())) == []


def test_the_audit_itself_catches_what_it_must() -> None:
    findings = audit(
        '<img src=x onerror=alert(1)><a href=" jAvA\tscript:alert(1)">x</a><p style="color:red">y</p>'
        '<a href="https://ok.example/" rel="opener">z</a><svg onload=alert(1)></svg>'
    )
    assert findings == [
        "tag <img>",
        "attribute src='x' on <img>",
        "attribute onerror='alert(1)' on <img>",
        "href scheme 'javascript' on <a>",
        "attribute style='color:red' on <p>",
        "rel='opener'",
        "tag <svg>",
        "attribute onload='alert(1)' on <svg>",
    ]


def test_raw_html_stays_visible_as_text() -> None:
    html = render_markdown("hello <script>alert('xss')</script> <b>bold?</b>")
    assert "&lt;script&gt;alert('xss')&lt;/script&gt;" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


@pytest.mark.parametrize(
    "name",
    [
        "markdown javascript link",
        "markdown javascript link encoded",
        "markdown javascript link mixed case",
        "markdown vbscript link",
        "markdown data html link",
        "markdown file link",
        "markdown reference javascript",
    ],
)
def test_links_with_dangerous_schemes_lose_their_target(name: str) -> None:
    html = render_markdown(XSS_PAYLOADS[name])
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(href.startswith(("http://", "https://", "mailto:", "/", "#")) for href in hrefs), hrefs


def test_safe_links_keep_their_target_and_get_rel() -> None:
    html = render_markdown("[a](https://ok.example/x) <http://ok.example/y> <someone@example.com>")
    assert 'href="https://ok.example/x"' in html
    assert 'href="http://ok.example/y"' in html
    assert 'href="mailto:someone@example.com"' in html
    assert html.count('rel="noopener noreferrer nofollow"') == 3


def test_images_become_their_alt_text_and_load_nothing() -> None:
    html = render_markdown(XSS_PAYLOADS["markdown image"])
    assert '<span class="md-image">the alt text</span>' in html
    assert EXFIL_HOST not in html


def test_an_image_without_alt_text_shows_its_url_as_plain_text() -> None:
    html = render_markdown(XSS_PAYLOADS["markdown image no alt"])
    assert f'<span class="md-image">{EXFIL_URL.replace("&", "&amp;")}</span>' in html
    assert "<a " not in html


def test_an_image_inside_a_link_keeps_the_link_but_not_the_image() -> None:
    html = render_markdown(XSS_PAYLOADS["markdown image in link"])
    assert '<a href="https://ok.example/"' in html
    assert '<span class="md-image">badge</span>' in html
    assert "<img" not in html


def test_html_in_code_is_shown_escaped() -> None:
    html = render_markdown(XSS_PAYLOADS["html in fence"])
    assert "<script" not in html
    # Highlighting splits the markup into token spans; the reader still sees the code as written.
    assert "<script>alert('xss')" in unescape(re.sub(r"<[^>]+>", "", html))
    plain = render_markdown(XSS_PAYLOADS["html in fence no language"])
    assert "<code>&lt;script&gt;alert('xss');" in plain
    inline = render_markdown(XSS_PAYLOADS["html in inline code"])
    assert inline.startswith("<p><code>&lt;script&gt;")


def test_broken_html_cannot_unbalance_the_page() -> None:
    html = render_markdown("<div><p>unclosed <b>tags <i>everywhere\n\n</td></tr></table></div></main>")
    assert "</main>" not in html and "</div>" not in html
    assert "&lt;/main&gt;" in html


def test_the_sanitiser_alone_strips_active_markup() -> None:
    # The second layer must hold even if the first one (raw HTML off) were ever turned on.
    dirty = (
        '<script>alert(1)</script><img src="https://exfil.invalid/x.png" alt="a" onerror="alert(1)">'
        '<a href="javascript:alert(1)" onclick="alert(1)" style="color:red">link</a>'
        '<svg onload="alert(1)"><circle/></svg><iframe src="https://exfil.invalid/"></iframe>'
        '<button onclick="alert(1)" type="submit" data-x="1">b</button><span class="evil k">k</span>'
        '<a href="https://ok.example/" target="_top">t</a>'
    )
    clean = sanitize_html(dirty)
    assert audit(clean) == [], clean
    assert "alert(1)" not in clean
    assert "exfil.invalid" not in clean
    assert '<span class="k">k</span>' in clean
    assert 'target="_top"' not in clean
