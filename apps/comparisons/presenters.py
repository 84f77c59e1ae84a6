"""What the comparison templates read: the composer's option and a turn's A/B block, as plain context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.safestring import SafeString

from apps.comparisons.models import Comparison
from apps.comparisons.services import baseline_choice_for, baseline_model_options, comparison_ready
from apps.core.markdown import render_markdown
from apps.panels.models import Panel
from apps.providers.registry import gateway_from_settings


def option_context(*, user: Any, panel: Panel | None) -> dict[str, Any]:
    """The composer's "compare with a single model" control for ``panel`` (none: nothing to choose)."""
    if panel is None:
        return {"panel": None}
    choice = baseline_choice_for(user=user, panel=panel)
    return {
        "panel": panel,
        "choice": choice,
        "model_options": baseline_model_options(panel=panel),
    }


@dataclass(frozen=True)
class Answer:
    """One side: its letter, its text as sanitised Markdown, and its name for after the vote."""

    letter: str
    html: SafeString
    name: str
    kind: str  # "fused" or "single"
    is_demo: bool


def _answers(comparison: Comparison) -> list[Answer]:
    gateway = gateway_from_settings()
    turn = comparison.turn
    panel_is_demo = all(
        gateway.is_demo(seat.get("model", "")) for seat in turn.panel_snapshot.get("seats", [])
    )
    fused = (render_markdown(turn.final_text), comparison.panel_name or "The panel", "fused", panel_is_demo)
    single = (
        render_markdown(comparison.text),
        comparison.model_id,
        "single",
        gateway.is_demo(comparison.model_id),
    )
    first, second = (single, fused) if comparison.baseline_is_a else (fused, single)
    return [Answer("A", *first), Answer("B", *second)]


def _sum(*costs: float | None) -> float | None:
    return None if any(cost is None for cost in costs) else sum(cost for cost in costs if cost is not None)


def block_context(
    *, comparison: Comparison | None, turn_id: int, interactive: bool, error: str = ""
) -> dict[str, Any]:
    """Context of ``comparisons/_block.html``. ``state`` is one of ``none`` (no comparison, or not to be
    shown here), ``waiting`` (the single model still answers), ``no_answer`` (the turn ended without a fused
    answer), ``failed`` (the single model did not answer), ``ready`` (vote now) and ``voted`` (names
    shown)."""
    context: dict[str, Any] = {"turn_id": turn_id, "comparison": comparison, "interactive": interactive}
    if comparison is None:
        return {**context, "state": "none"}
    turn = comparison.turn
    if comparison.vote:
        state = "voted"
    elif not interactive:
        # Shared pages show a comparison only once its owner has voted, and read-only.
        state = "none"
    elif comparison.status == Comparison.Status.RUNNING:
        state = "waiting" if turn.status == "done" else "none"
    elif turn.status != "done":
        state = "no_answer"
    elif comparison.status != Comparison.Status.DONE:
        state = "failed"
    else:
        state = "ready" if comparison_ready(comparison) else "no_answer"
    context.update(
        state=state,
        error=error,
        baseline_cost=comparison.cost,
        total_with_baseline=_sum(turn.cost, comparison.cost),
        baseline_tokens=comparison.prompt_tokens + comparison.completion_tokens,
        baseline_is_demo=gateway_from_settings().is_demo(comparison.model_id),
    )
    if state in ("ready", "voted"):
        answers = _answers(comparison)
        context["answers"] = answers
        if state == "voted":
            voted = {"a": "A", "b": "B"}.get(comparison.vote)
            context["voted_letter"] = voted
            context["outcome"] = comparison.outcome
    return context
