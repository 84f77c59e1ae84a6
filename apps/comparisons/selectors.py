"""Read-side queries for comparisons: the user's own only; each panel's win rate against its baselines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from apps.comparisons.models import Comparison

# The normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054


def comparison_get_for(*, user: Any, comparison_id: int) -> Comparison:
    """One of the user's comparisons, with its turn; ``Comparison.DoesNotExist`` for anyone else's."""
    if not user.is_authenticated:
        raise Comparison.DoesNotExist("Anonymous users own no comparisons")
    return Comparison.objects.select_related("turn").get(pk=comparison_id, owner_id=user.pk)


def comparison_for_turn(*, user: Any, turn_id: int) -> Comparison | None:
    """The comparison of one of the user's turns; None when the turn has none (or is not the user's)."""
    if not user.is_authenticated:
        return None
    return Comparison.objects.select_related("turn").filter(turn_id=turn_id, owner_id=user.pk).first()


def comparisons_by_turn(*, conversation_id: int) -> dict[int, Comparison]:
    """Every comparison of one conversation's turns, by turn id (one query for a whole page)."""
    rows = Comparison.objects.select_related("turn").filter(turn__conversation_id=conversation_id)
    return {row.turn_id: row for row in rows}


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion; ``successes`` may be fractional (a tie counts as half)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class PanelWinRate:
    """A panel's record against the single models it was compared with.

    ``rate`` is (wins + ties / 2) / n: a tie counts as half a win; ``low`` and ``high`` are the 95% Wilson
    interval of that rate.
    """

    panel_name: str
    wins: int = 0
    losses: int = 0
    ties: int = 0
    baselines: list[str] = field(default_factory=list)
    baseline_cost: float | None = 0.0

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def rate(self) -> float:
        return (self.wins + self.ties / 2) / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins + self.ties / 2, self.n)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]


def win_rates_for(*, user: Any) -> list[PanelWinRate]:
    """Each of the user's panels that has voted comparisons, most compared first.

    Grouped by panel (by its name as it ran once the panel is deleted); ``baselines`` are the single models
    it met, ``baseline_cost`` what their answers cost in all (None when one cost is unknown).
    """
    if not user.is_authenticated:
        return []
    rows = (
        Comparison.objects.filter(owner_id=user.pk)
        .exclude(vote="")
        .order_by("started_at", "pk")
        .values("panel_id", "panel_name", "model_id", "vote", "baseline_is_a", "cost")
    )
    by_panel: dict[Any, PanelWinRate] = {}
    for row in rows:
        key = row["panel_id"] if row["panel_id"] is not None else f"name:{row['panel_name']}"
        rate = by_panel.setdefault(key, PanelWinRate(panel_name=row["panel_name"]))
        rate.panel_name = row["panel_name"]  # the latest name it ran under
        outcome = Comparison(vote=row["vote"], baseline_is_a=row["baseline_is_a"]).outcome
        if outcome == "panel":
            rate.wins += 1
        elif outcome == "baseline":
            rate.losses += 1
        else:
            rate.ties += 1
        if row["model_id"] not in rate.baselines:
            rate.baselines.append(row["model_id"])
        cost = row["cost"]
        rate.baseline_cost = None if cost is None or rate.baseline_cost is None else rate.baseline_cost + cost
    return sorted(by_panel.values(), key=lambda rate: (-rate.n, rate.panel_name))
