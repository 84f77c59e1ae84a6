"""The Markdown renderer: what formatting survives, how code blocks look, and that it caches.

How long it takes is measured by ``python -m bench --only markdown``, not here (timings are not tests).
"""

from __future__ import annotations

from django.template import Context, Template
from django.utils.safestring import SafeString

from apps.core.markdown import (
    _CACHE,
    CACHE_BUDGET_CHARS,
    HIGHLIGHT_MAX_CHARS,
    _RenderCache,
    render_markdown,
)


def test_it_renders_common_formatting() -> None:
    html = render_markdown("# Title\n\n**bold** *em* ~~gone~~ `tick`\n\n- one\n- two\n\n3. three\n\n> quoted")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>em</em>" in html
    assert "<s>gone</s>" in html
    assert "<code>tick</code>" in html
    assert "<ul>" in html and "<li>one</li>" in html
    assert '<ol start="3">' in html
    assert "<blockquote>" in html


def test_it_returns_a_safe_string_and_empty_for_empty_text() -> None:
    assert isinstance(render_markdown("hi"), SafeString)
    assert render_markdown("") == ""


def test_it_renders_tables_with_alignment_as_classes_not_styles() -> None:
    html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    assert "<table>" in html
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-center">2</td>' in html
    assert '<td class="align-right">3</td>' in html
    assert "style=" not in html


def test_it_highlights_fenced_code_with_pygments_classes() -> None:
    html = render_markdown('```python\ndef f():\n    return "x"\n```')
    assert '<pre class="highlight"><code>' in html
    assert '<span class="k">def</span>' in html
    assert '<span class="codeblock-lang">python</span>' in html
    assert "style=" not in html


def test_it_gives_every_code_block_a_copy_button() -> None:
    html = render_markdown("```\nplain\n```\n\n    indented\n")
    assert (
        html.count('<button type="button" class="copy" data-copy="" aria-label="Copy code">Copy</button>')
        == 2
    )


def test_it_shows_an_unknown_language_as_escaped_plain_text() -> None:
    html = render_markdown("```nosuchlanguage\nif a < b: pass\n```")
    assert "if a &lt; b: pass" in html
    assert '<span class="codeblock-lang">nosuchlanguage</span>' in html


def test_it_escapes_a_hostile_fence_language_label() -> None:
    html = render_markdown('```"><script>alert(1)</script>\nx\n```')
    assert "<script>" not in html
    assert '<span class="codeblock-lang">"&gt;&lt;script&gt;alert(1)&lt;/script&gt;</span>' in html


def test_it_skips_highlighting_huge_blocks_but_keeps_them() -> None:
    code = "x = 1\n" * (HIGHLIGHT_MAX_CHARS // 6 + 10)
    html = render_markdown(f"```python\n{code}```")
    assert '<span class="n">' not in html
    assert html.count("x = 1") == code.count("x = 1")


def test_it_opens_external_links_in_a_new_tab_without_referrer() -> None:
    html = render_markdown("[docs](https://example.com/a) and [here](/panels/)")
    assert (
        '<a href="https://example.com/a" target="_blank" rel="noopener noreferrer nofollow">docs</a>' in html
    )
    assert '<a href="/panels/" rel="noopener noreferrer nofollow">here</a>' in html


def test_it_keeps_mailto_links() -> None:
    assert 'href="mailto:team@example.com"' in render_markdown("[mail](mailto:team@example.com)")


def test_the_template_filter_renders_and_treats_none_as_empty() -> None:
    template = Template("{% load markdown %}<div>{{ text|markdown }}</div>")
    assert template.render(Context({"text": "**hi** <b>x</b>"})) == (
        "<div><p><strong>hi</strong> &lt;b&gt;x&lt;/b&gt;</p>\n</div>"
    )
    assert template.render(Context({"text": None})) == "<div></div>"


def _long_answer(n: int) -> str:
    paragraph = f"Some **bold** text {n} with a [link](https://example.com) and `code`.\n\n"
    code = "```python\n" + "def f(x):\n    return x * 2\n" * 20 + "```\n\n"
    return (paragraph * 10 + code + "| a | b |\n|---|---|\n| 1 | 2 |\n\n") * 5  # about 6 kB, 200 code lines


def test_it_renders_the_same_text_again_from_its_cache() -> None:
    answer = _long_answer(-1)
    first = render_markdown(answer)
    hits = _CACHE.hits
    again = render_markdown(answer)
    assert _CACHE.hits == hits + 1
    assert again == first


def test_the_cache_keeps_the_answers_of_many_concurrent_runs() -> None:
    # 100 runs of 3 seats, an analysis and a fused answer, each rendered when it finishes and again in the
    # turn's last snapshot: none is rendered twice.
    cache = _RenderCache(budget=CACHE_BUDGET_CHARS)
    texts = [
        f"Answer {n}: some **bold** text with a [link](https://example.com).\n\n" * 30 for n in range(500)
    ]
    for text in texts:
        cache.render(text)
    for text in texts:
        cache.render(text)
    assert cache.hits == 500 and len(cache) == 500


def test_the_cache_drops_the_least_recently_used_texts_past_its_budget() -> None:
    cache = _RenderCache(budget=0)
    texts = [f"answer **{n}**" for n in range(4)]
    html = {text: cache.render(text) for text in texts}
    assert len(cache) == 0 and cache.held == 0  # nothing fits a budget of 0
    cache.budget = sum(len(text) + len(html[text]) for text in texts[:3])
    for text in texts[:3]:
        cache.render(text)
    cache.render(texts[0])  # used again: the most recent now
    cache.render(texts[3])  # over budget: the least recently used (texts[1]) goes
    assert len(cache) == 3 and cache.held <= cache.budget
    hits = cache.hits
    cache.render(texts[0])
    cache.render(texts[1])
    assert cache.hits == hits + 1  # texts[0] was kept, texts[1] was rendered again
