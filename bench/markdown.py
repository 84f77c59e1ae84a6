"""How long the fused answer's Markdown rendering takes: a 6 kB answer with 200 lines of highlighted code.

``python -m bench --only markdown``. Rendered uncached (the work a new answer costs) and from the cache (a
page showing it again), in one run, so the ratio holds on a busy machine where the absolute figures do not.

Then the cache's size: 50 concurrent runs finish 250 texts (3 seats, an analysis and a fused answer each),
each rendered when it finishes and again in its turn's last snapshot. The second pass is timed through the
shipped cache (a budget of characters) and through a cache of 128 texts, the size it had before.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable

RUNS = 20
# 50 concurrent runs x (3 seats + analysis + fused answer).
RUN_TEXTS = 250


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

    _cache_sizes(render_markdown_uncached)


def _cache_sizes(render_uncached: Callable[[str], str]) -> None:
    from apps.core.markdown import CACHE_BUDGET_CHARS, _RenderCache

    texts = [long_answer(1000 + n) for n in range(RUN_TEXTS)]
    by_count = functools.lru_cache(maxsize=128)(render_uncached)
    by_budget = _RenderCache(CACHE_BUDGET_CHARS)
    seconds = {}
    for name, render in (("128 texts", by_count), ("the budget", by_budget.render)):
        for text in texts:  # each answer's column, as its seat finishes
            render(text)
        started = time.perf_counter()
        for text in texts:  # the turns' last snapshots
            render(text)
        seconds[name] = time.perf_counter() - started
    print(
        f"{RUN_TEXTS} texts rendered again (50 runs' last snapshots): {seconds['the budget'] * 1000:.1f} ms "
        f"from the shipped cache ({CACHE_BUDGET_CHARS:,} characters), {seconds['128 texts'] * 1000:.0f} ms "
        f"with a cache of 128 texts (x{seconds['128 texts'] / seconds['the budget']:,.0f})"
    )
