"""What a run of a panel is likely to cost, and what a finished turn cost next to its writer alone."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from django.conf import settings
from django.utils.module_loading import import_string

from apps.fusion.schemas import FusionOptions
from apps.panels.models import Panel
from apps.providers.catalog import get_catalog
from apps.providers.registry import gateway_from_settings

# How the estimate is made (shown next to it in the chatroom):
# - tokens are approximated as characters / 4, rounded up;
# - every seat reads the prompt, the conversation so far and its own system prompt;
# - the judge reads that plus every answer and its own instructions; the writer reads that plus the analysis;
# - "typical": each call writes what that model wrote in that role in the user's recent runs (the median,
#   from ``UsageHistory``), else a typical length for its role (TYPICAL_*_TOKENS);
# - "low": each call writes as little as it ever did recently (else LOW_*_TOKENS, a few words) and its input
#   counts half, since tokenizers differ (some count a word where we count four characters);
# - "high", the worst case: every call writes max_completion_tokens (the bound the engine enforces);
# - web tool fees and fetched pages are not counted; provider-side caching is ignored.
CHARS_PER_TOKEN = 4
TYPICAL_ANSWER_TOKENS = 400
TYPICAL_ANALYSIS_TOKENS = 400
LOW_ANSWER_TOKENS = 20
LOW_ANALYSIS_TOKENS = 50
LOW_INPUT_SHARE = 0.5
JUDGE_INSTRUCTION_TOKENS = 600
WRITER_INSTRUCTION_TOKENS = 300

Role = Literal["seat", "judge", "writer"]


@dataclass(frozen=True)
class UsageHistory:
    """What a user's recent runs wrote: completion tokens per call, by (role, model), newest first.

    The chat app, which records runs, reads it (the ``COST_ESTIMATE_USAGE_HISTORY`` setting names the reader:
    panels sit below chat and cannot import it)."""

    completions: Mapping[tuple[str, str], Sequence[int]] = field(default_factory=dict)

    def typical(self, role: Role, model: str) -> int | None:
        tokens = self.completions.get((role, model))
        return round(statistics.median(tokens)) if tokens else None

    def least(self, role: Role, model: str) -> int | None:
        tokens = self.completions.get((role, model))
        return min(tokens) if tokens else None


def usage_history_for(*, user: Any) -> UsageHistory:
    """The user's ``UsageHistory`` through the reader the settings name (none: an empty history)."""
    reader = getattr(settings, "COST_ESTIMATE_USAGE_HISTORY", "")
    if not reader or user is None or not getattr(user, "is_authenticated", False):
        return UsageHistory()
    history: UsageHistory = import_string(reader)(user=user)
    return history


class CostEstimate(NamedTuple):
    """USD for one run: ``typical`` first, the range ``low`` to ``high`` (the worst case) around it;
    ``from_history`` when some call's figure came from the user's own runs."""

    low: float
    typical: float
    high: float
    from_history: bool = False


class CostComparison(NamedTuple):
    """What a finished turn cost, and about what its writer alone would have cost (None: unknown)."""

    actual: float | None
    writer_alone: float | None


def tokens_for_chars(chars: int) -> int:
    return math.ceil(max(chars, 0) / CHARS_PER_TOKEN)


def _prices(model: str) -> tuple[float, float] | None:
    """USD per token (prompt, completion): zero for demo models, None when the catalog does not know."""
    if gateway_from_settings().is_demo(model):
        return 0.0, 0.0
    info = get_catalog().get(model)
    if info is None or info.prompt_price is None or info.completion_price is None:
        return None
    return info.prompt_price, info.completion_price


def _call_cost(prices: tuple[float, float], prompt_tokens: float, completion_tokens: int) -> float:
    return prices[0] * prompt_tokens + prices[1] * completion_tokens


def _plan(snapshot_or_panel: Panel | Mapping[str, Any]) -> tuple[list[tuple[str, str]], str, str, int]:
    if isinstance(snapshot_or_panel, Panel):
        snapshot: Mapping[str, Any] = snapshot_or_panel.snapshot()
    else:
        snapshot = snapshot_or_panel
    seats = [(str(seat["model"]), seat.get("system_prompt") or "") for seat in snapshot.get("seats", [])]
    options = snapshot.get("options") or {}
    max_tokens = int(options.get("max_completion_tokens") or FusionOptions().max_completion_tokens)
    writer = str(snapshot.get("writer") or snapshot.get("judge") or "")
    return seats, str(snapshot.get("judge", "")), writer, max_tokens


def unpriced_models(*, snapshot_or_panel: Panel | Mapping[str, Any]) -> list[str]:
    """The models of a panel whose price is unknown (why an estimate is None)."""
    seats, judge, writer, _ = _plan(snapshot_or_panel)
    models = dict.fromkeys([model for model, _ in seats] + [judge, writer])
    return [model for model in models if _prices(model) is None]


def panel_estimate_cost(
    *,
    snapshot_or_panel: Panel | Mapping[str, Any],
    prompt_chars: int,
    history_chars: int,
    usage: UsageHistory | None = None,
) -> CostEstimate | None:
    """The low, typical and worst-case USD cost of one run of this panel on a prompt of ``prompt_chars``
    characters after a conversation of ``history_chars``, the typical one from ``usage`` where it knows the
    model in its role; None when any model's price is unknown. See the notes above."""
    seats, judge, writer, max_tokens = _plan(snapshot_or_panel)
    if not seats:
        return None
    prices = {model: _prices(model) for model in {model for model, _ in seats} | {judge, writer}}
    known = {model: price for model, price in prices.items() if price is not None}
    if len(known) != len(prices):
        return None
    usage = usage or UsageHistory()
    defaults: dict[str, tuple[int, int]] = {
        "seat": (LOW_ANSWER_TOKENS, TYPICAL_ANSWER_TOKENS),
        "judge": (LOW_ANALYSIS_TOKENS, TYPICAL_ANALYSIS_TOKENS),
        "writer": (LOW_ANSWER_TOKENS, TYPICAL_ANSWER_TOKENS),
    }
    from_history = False

    def output(role: Role, model: str, scenario: str) -> int:
        nonlocal from_history
        if scenario == "high":
            return max_tokens
        seen = usage.least(role, model) if scenario == "low" else usage.typical(role, model)
        from_history = from_history or seen is not None
        fallback = defaults[role][0 if scenario == "low" else 1]
        return min(seen if seen is not None else fallback, max_tokens)

    context = tokens_for_chars(prompt_chars + history_chars)
    figures: dict[str, float] = {}
    for scenario in ("low", "typical", "high"):
        share = LOW_INPUT_SHARE if scenario == "low" else 1.0
        answers = [output("seat", model, scenario) for model, _ in seats]
        total = sum(
            _call_cost(known[model], share * (context + tokens_for_chars(len(system_prompt))), answer)
            for (model, system_prompt), answer in zip(seats, answers, strict=True)
        )
        analysis = output("judge", judge, scenario)
        judge_input = context + sum(answers) + JUDGE_INSTRUCTION_TOKENS
        total += _call_cost(known[judge], share * judge_input, analysis)
        writer_input = context + sum(answers) + analysis + WRITER_INSTRUCTION_TOKENS
        total += _call_cost(known[writer], share * writer_input, output("writer", writer, scenario))
        figures[scenario] = total
    return CostEstimate(
        low=figures["low"], typical=figures["typical"], high=figures["high"], from_history=from_history
    )


def _writer_completion_tokens(turn: Any) -> int:
    for step in (getattr(turn, "totals", None) or {}).get("steps", []):
        if step.get("role") == "writer":
            tokens = int((step.get("usage") or {}).get("completion_tokens") or 0)
            if tokens:
                return tokens
    return tokens_for_chars(len(getattr(turn, "final_text", "") or ""))


def history_chars_before(turns: Iterable[Any]) -> int:
    """Characters of prompts and fused answers of earlier turns: what a next turn sends as history."""
    return sum(len(turn.prompt or "") + len(turn.final_text or "") for turn in turns)


def _turn_writer(turn: Any) -> str:
    snapshot = getattr(turn, "panel_snapshot", None) or {}
    return str(snapshot.get("writer") or getattr(turn, "writer", "") or "")


def turn_cost_comparison(*, turn: Any, history_chars: int | None = None) -> CostComparison:
    """The turn's recorded cost, and an estimate of asking its writer alone the same question.

    ``turn`` is a ``chat.Turn`` or anything with the same attributes (``cost``, ``totals``, ``prompt``,
    ``final_text``, and ``panel_snapshot`` or ``writer``). "Writer alone" is one call of the writer model
    reading the prompt and ``history_chars`` characters of conversation before it, and writing an answer as
    long as the fused one (the writer's recorded completion tokens). Prices from the catalog.

    ``history_chars`` None: taken from ``turn.history_chars`` when present, else from the database for a
    ``chat.Turn`` (``turn.conversation``), else 0. Pass it when calling from async code.
    """
    actual = getattr(turn, "cost", None)
    if actual is None:
        actual = ((getattr(turn, "totals", None) or {}).get("usage") or {}).get("cost")
    writer = _turn_writer(turn)
    prices = _prices(writer) if writer else None
    if prices is None:
        return CostComparison(actual=actual, writer_alone=None)
    if history_chars is None:
        history_chars = getattr(turn, "history_chars", None)
    if history_chars is None and hasattr(turn, "conversation"):
        # Only the shown version of each earlier turn is history (regenerated versions are kept beside it).
        history_chars = history_chars_before(
            turn.conversation.turns.filter(position__lt=turn.position, shown=True)
        )
    prompt_tokens = tokens_for_chars(len(turn.prompt or "") + (history_chars or 0))
    writer_alone = _call_cost(prices, prompt_tokens, _writer_completion_tokens(turn))
    return CostComparison(actual=actual, writer_alone=writer_alone)
