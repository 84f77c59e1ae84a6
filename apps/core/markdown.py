"""Markdown to safe HTML for model and user text.

Two layers, on purpose: markdown-it-py runs with raw HTML disabled (so ``<script>`` in the source stays text),
and its output then goes through an nh3 allow-list, so a renderer bug or a future plugin cannot let markup
through.
Images are never emitted: a remote image is a request the reader did not choose to make, which makes it a data
exfiltration channel for a model that was fed secrets. Their alt text (or URL) stays as plain text instead.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import nh3
from django.template.loader import get_template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

if TYPE_CHECKING:
    from django.template.backends.base import _EngineTemplate

# Pygments is linear but not cheap; beyond this a block is shown plain rather than stalling a reply.
HIGHLIGHT_MAX_CHARS = 20_000
# Longer texts are rendered every time rather than kept in the cache.
CACHE_MAX_CHARS = 32_000
# What the cache keeps in all, in characters of source and HTML (16 MB of ASCII; highlighted code's HTML
# runs to ~5x its source, so ~75 runs' worth of 6 kB answers with code). A count of entries would not do: a
# run's columns are rendered when each seat finishes and again in the turn's last snapshot, and 50
# concurrent runs of 3 seats, an analysis and a fused answer are 250 texts, past a cache of 128, so every
# last snapshot rendered its answers again, on the event loop (a 6 kB answer with code: ~15 ms each;
# ``python -m bench --only markdown``).
CACHE_BUDGET_CHARS = 16_000_000
# Deeply nested lists and quotes cost time and say nothing; markdown-it stops nesting past this depth.
MAX_NESTING = 20

_ALIGN_CLASSES = {
    "text-align:left": "align-left",
    "text-align:center": "align-center",
    "text-align:right": "align-right",
}
_FORMATTER = HtmlFormatter(nowrap=True)

_TAGS = {
    "a", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    # Values are pinned, not just names: these attributes can only ever carry what our renderer writes.
    tag_attribute_values={
        "a": {"target": {"_blank"}},
        "button": {"type": {"button"}, "data-copy": {""}, "aria-label": {"Copy code"}},
    },
    allowed_classes={
        "div": {"codeblock", "codeblock-bar"},
        "span": {"codeblock-lang", "md-image", *(cls for cls in STANDARD_TYPES.values() if cls)},
        "pre": {"highlight"},
        "button": {"copy"},
        "th": set(_ALIGN_CLASSES.values()),
        "td": set(_ALIGN_CLASSES.values()),
    },
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


@functools.lru_cache(maxsize=128)
def _lexer_for(language: str) -> Lexer | None:
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _code_html(code: str, language: str) -> str:
    lexer = _lexer_for(language.lower()) if language else None
    if lexer is None or len(code) > HIGHLIGHT_MAX_CHARS:
        return escapeHtml(code)
    return highlight(code, lexer, _FORMATTER)


@functools.cache
def _codeblock_template() -> _EngineTemplate:
    return get_template("core/codeblock.html")


class _Renderer(RendererHTML):
    """markdown-it's HTML renderer with our code blocks, links, images and table alignment."""

    def _codeblock(self, code: str, language: str) -> str:
        context = {"code_html": mark_safe(_code_html(code, language)), "language": language[:40]}  # noqa: S308
        return _codeblock_template().render(context)

    def fence(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        info = unescapeAll(token.info).strip() if token.info else ""
        return self._codeblock(token.content, info.split(maxsplit=1)[0] if info else "")

    def code_block(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        return self._codeblock(tokens[idx].content, "")

    def image(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env)
        return format_html('<span class="md-image">{}</span>', alt or str(token.attrGet("src") or ""))

    def link_open(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        if str(token.attrGet("href") or "").startswith(("http://", "https://")):
            token.attrSet("target", "_blank")
        return self.renderToken(tokens, idx, options, env)

    def th_open(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        return self._aligned_cell(tokens, idx, options, env)

    def td_open(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        return self._aligned_cell(tokens, idx, options, env)

    def _aligned_cell(self, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        # Tables align with inline styles, which the sanitiser (rightly) strips; a class survives it.
        token = tokens[idx]
        style = token.attrGet("style")
        if style is not None:
            token.attrs.pop("style", None)
            if align := _ALIGN_CLASSES.get(str(style)):
                token.attrSet("class", align)
        return self.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt(
        "js-default", {"html": False, "linkify": False, "maxNesting": MAX_NESTING}, renderer_cls=_Renderer
    )
    return md.enable(["table", "strikethrough"])


_MD = _parser()


def render_markdown(text: str) -> SafeString:
    """Render untrusted Markdown (a model's answer, a user's prompt) to HTML that is safe to insert in a page.

    Raw HTML in ``text`` comes out as visible text; links keep only http, https and mailto (plus relative)
    targets and get ``rel="noopener noreferrer nofollow"``; images become their alt text; fenced code is
    highlighted with Pygments classes (``static/css/code.css``) and gets a copy button
    (``static/js/markdown.js``).
    """
    if not text:
        return SafeString("")
    html = _CACHE.render(text) if len(text) <= CACHE_MAX_CHARS else render_markdown_uncached(text)
    return mark_safe(html)  # noqa: S308


class _RenderCache:
    """Rendered HTML by source text, least recently used dropped first once ``budget`` characters are held.

    A conversation page renders every stored answer again on each load, and a run renders each finished
    answer twice (its column, the turn's last snapshot); finished answers never change, so a text is rendered
    once per process while it is in use. Used from the event loop and from the thread that runs sync views.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self.hits = 0
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, text: str) -> str:
        with self._lock:
            html = self._entries.get(text)
            if html is not None:
                self._entries.move_to_end(text)
                self.hits += 1
                return html
        html = render_markdown_uncached(text)  # outside the lock: another thread may render meanwhile
        with self._lock:
            if text not in self._entries:
                self._entries[text] = html
                self.held += len(text) + len(html)
                while self.held > self.budget and self._entries:
                    old_text, old_html = self._entries.popitem(last=False)
                    self.held -= len(old_text) + len(old_html)
        return html


_CACHE = _RenderCache(CACHE_BUDGET_CHARS)


def render_markdown_uncached(text: str) -> str:
    """The work behind ``render_markdown`` without its cache (for measuring it)."""
    return sanitize_html(_MD.render(text))


def sanitize_html(html: str) -> str:
    """The second layer alone: keep only the tags, attributes, classes and URL schemes our renderer emits."""
    return _CLEANER.clean(html)
