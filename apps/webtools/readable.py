"""A web page's readable text and title, from HTML a model asked for: hostile input, bounded work.

Python 3.11's ``HTMLParser`` takes quadratic time on unterminated constructs, so a small page built for it
could hold a thread for hours: the markup is first put into a shape it parses in one pass (``_well_formed``),
parsing stops once there is enough text, and a time budget ends it with a note. No network, no Django.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser

_MAX_TITLE_CHARS = 300

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object"})
_PARAGRAPHS = frozenset(
    {
        *("p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "hr"),
        *("section", "article", "main", "header", "footer", "nav", "aside", "figure", "form", "details"),
    }
)
_LINES = frozenset({"br", "div", "li", "tr", "dt", "dd", "figcaption", "summary", "caption"})


class _Readable(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive unescaped in handle_data
        self.parts: list[str] = []
        self.length = 0  # of the text in parts
        self.title: list[str] = []
        self._skipping: list[str] = []
        self._in_title = False
        self._title_done = False
        self._pending = 0  # line breaks owed before the next text: 1 (a line) or 2 (a paragraph)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" or tag in _PARAGRAPHS or tag in _LINES:  # </head> and <body> are optional
            self._skipping = [t for t in self._skipping if t != "head"]
        if tag == "title":
            # Only the document's title: <svg> has <title> elements too.
            self._in_title = not self._title_done and all(t == "head" for t in self._skipping)
        elif tag in _SKIPPED:
            self._skipping.append(tag)
        else:
            self._break(tag)
            if tag == "li" and not self._skipping:
                self._flush()
                self.parts.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)  # <br/>, <hr/>; a self-closed element never opens a skipped region

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._title_done = self._title_done or self._in_title
            self._in_title = False
        elif tag in self._skipping:
            while self._skipping.pop() != tag:
                pass
        else:
            self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skipping:
            text = re.sub(r"\s+", " ", data)
            if text.strip():
                self._flush()
                self.parts.append(text)
                self.length += len(text)
            elif not self._pending:
                self.parts.append(" ")

    def _break(self, tag: str) -> None:
        # Breaks wait for the next text, and the bigger one wins: </li><li> is one line break, not two.
        if not self._skipping:
            self._pending = max(self._pending, 2 if tag in _PARAGRAPHS else 1 if tag in _LINES else 0)

    def _flush(self) -> None:
        self.parts.append("\n" * self._pending)
        self._pending = 0


# A whole start tag (attribute values may hold "<" only inside quotes) or end tag. Possessive quantifiers: a
# failed attempt never backtracks, and it stops at the first stray "<", so scanning stays linear.
_TAG = re.compile(
    r"""<(?:(?P<name>[a-zA-Z][^\s/<>]*+)
        (?:(?:\s++|(?<=["']))[^\s/<>="']++(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s<>"'=`]++))?+)*+\s*+/?>
      | /[a-zA-Z][^<>]*+>)""",
    re.VERBOSE,
)
_RAW_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in ("script", "style", "title", "textarea")}


_STRAY_LT = re.compile(r"<(?![a-zA-Z/!?])")
_BATCH_CHARS = 32_768


def _well_formed(html: str) -> Iterator[str]:
    """``html`` in pieces, with every construct HTMLParser could choke on removed or escaped, in one pass.

    Python 3.11's HTMLParser takes quadratic time on unterminated constructs ("<a<a<a...", "<!--<!--...":
    100 kB of them cost 20 s): a hostile page must not stall the server. Comments, declarations, scripts and
    styles are dropped, a "<" that does not open a whole tag becomes "&lt;", and title/textarea content is
    escaped, so the parser only ever sees complete tags.
    """
    html = _STRAY_LT.sub("&lt;", html)  # the common case of a stray "<", done in C
    pos, end = 0, len(html)
    next_gt = -1  # cached: a run of "<!" without ">" must not rescan the rest each time
    while pos < end:
        i = html.find("<", pos)
        stop = end if i < 0 else i
        # Text in bounded slices, so the caller can stop between them; a cut "&lt;" waits in the parser.
        yield from (html[k : min(k + _BATCH_CHARS, stop)] for k in range(pos, stop, _BATCH_CHARS))
        if i < 0:
            return
        if html.startswith("<!--", i):
            close = html.find("-->", i + 4)
            pos = end if close < 0 else close + 3
        elif html.startswith(("<!", "<?"), i):
            if next_gt < i:
                next_gt = html.find(">", i) % (end + 1)  # -1 (none left) becomes end
            pos = next_gt + 1
        elif (tag := _TAG.match(html, i)) is None:
            yield "&lt;"
            pos = i + 1
        else:
            pos = tag.end()
            name = (tag.group("name") or "").lower()
            if name not in _RAW_END:
                yield tag.group()
                continue
            raw_end = _RAW_END[name].search(html, pos)
            stop = raw_end.start() if raw_end else end
            if name in ("title", "textarea"):
                yield f"<{name}>{html[pos:stop].replace('<', '&lt;')}</{name}>"
            close = html.find(">", stop)
            pos = end if close < 0 else close + 1


def html_to_text(html: str, *, max_chars: int = 20_000, budget_s: float = 1.0) -> tuple[str, str, bool]:
    """(title, readable text, whether all of it was read) of an HTML document: no scripts, styles or markup;
    one block per line. Reading stops once the text is well past ``max_chars``, or after ``budget_s``: the
    parser is pure Python, and 2 MB of tags costs it seconds."""
    parser = _Readable()
    started = time.monotonic()
    batch: list[str] = []
    size, finished = 0, True
    for piece in _well_formed(html):
        batch.append(piece)
        size += len(piece)
        if size < _BATCH_CHARS:
            continue
        parser.feed("".join(batch))
        batch.clear()
        size = 0
        if parser.length > 2 * max_chars + 1000:
            break
        if time.monotonic() - started > budget_s:
            finished = False
            break
    parser.feed("".join(batch))
    parser.close()
    title = " ".join("".join(parser.title).split())[:_MAX_TITLE_CHARS]
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return title, text.strip(), finished
