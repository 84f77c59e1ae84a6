"""How long the fused answer's Markdown rendering takes: a 6 kB answer with 200 lines of highlighted code.

``python -m bench --only markdown``. Rendered uncached (the work a new answer costs) and from the cache (a
page showing it again), in one run, so the ratio holds on a busy machine where the absolute figures do not.
"""

from __future__ import annotations

import os
import statistics
import time

RUNS = 20


def long_answer(n: int) -> str:
    paragraph = f"Some **bold** text {n} with a [link](https://example.com) and `code`.\n\n"
    code = "```python\n" + "def f(x):\n    return x * 2\n" * 20 + "```\n\n"
    return (paragraph * 10 + code + "| a | b |\n|---|---|\n| 1 | 2 |\n\n") * 5


def run() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    import django

    django.setup()
    from apps.core.markdown import render_markdown, render_markdown_uncached

    render_markdown_uncached(long_answer(-1))  # the lexer lookup and the first template load
    uncached = []
    for n in range(RUNS):
        started = time.perf_counter()
        render_markdown_uncached(long_answer(n))
        uncached.append(time.perf_counter() - started)
    answer = long_answer(0)
    render_markdown(answer)
    cached = []
    for _ in range(RUNS):
        started = time.perf_counter()
        render_markdown(answer)
        cached.append(time.perf_counter() - started)
    fresh, again = statistics.median(uncached), statistics.median(cached)
    print(
        f"{len(answer):,}-character answer: {fresh * 1000:.1f} ms to render (median of {RUNS}), "
        f"{again * 1e6:.0f} us from the cache ({fresh / again:,.0f}x)"
    )
