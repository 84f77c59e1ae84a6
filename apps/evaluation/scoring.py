"""Scores and summaries: pure functions over verdicts and figures, no Django.

A task's score is DRACO's: the sum of the weights of the criteria the grader found MET (a MET negative
criterion, an error present, subtracts its weight) divided by the sum of the positive weights, clamped to
[0, 1]. An ungraded criterion (the grader's reply was malformed twice) counts neither way: it leaves the
numerator and the denominator, as if the rubric did not have it, and the number of ungraded verdicts is
reported beside the score (it is never guessed as MET or UNMET).

The mean over tasks has a 95% confidence interval from Student's t distribution (n - 1 degrees of freedom).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

VerdictStatus = Literal["met", "unmet", "ungraded"]

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's 1.96 is within 2%.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class Graded:
    """One criterion's weight, its section and the grader's verdict on it."""

    weight: float
    status: VerdictStatus
    section: str = ""


def score(graded: Iterable[Graded]) -> float | None:
    """The task score in [0, 1]; None when no positive criterion was graded."""
    items = [item for item in graded if item.status != "ungraded"]
    positive = sum(item.weight for item in items if item.weight > 0)
    if positive <= 0:
        return None
    met = sum(item.weight for item in items if item.status == "met")
    return min(max(met / positive, 0.0), 1.0)


def section_scores(graded: Iterable[Graded]) -> dict[str, float | None]:
    """The same formula within each section (a section with only negative criteria scores None)."""
    by_section: dict[str, list[Graded]] = {}
    for item in graded:
        by_section.setdefault(item.section, []).append(item)
    return {section: score(items) for section, items in by_section.items()}


def t95(df: int) -> float:
    if df < 1:
        return math.nan
    return _T95[df - 1] if df <= len(_T95) else 1.96


@dataclass(frozen=True)
class MeanInterval:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        if self.mean is None or self.high is None:
            return None
        return self.high - self.mean


def mean_interval(values: Sequence[float]) -> MeanInterval:
    """The mean and its 95% t interval (clamped to [0, 1], where scores live); no interval for n < 2."""
    n = len(values)
    if n == 0:
        return MeanInterval(None, None, None, 0)
    mean = statistics.fmean(values)
    if n < 2:
        return MeanInterval(mean, None, None, 1)
    half = t95(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return MeanInterval(mean, max(mean - half, 0.0), min(mean + half, 1.0), n)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class WinRate:
    """How often ``a`` scored higher than ``b`` on the tasks both answered; a tie counts half."""

    a: str
    b: str
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float | None:
        return None if not self.n else (self.wins + self.ties / 2) / self.n


def win_rate(a: str, b: str, scores_a: dict[int, float], scores_b: dict[int, float]) -> WinRate:
    wins = ties = losses = 0
    for task in scores_a.keys() & scores_b.keys():
        difference = scores_a[task] - scores_b[task]
        if abs(difference) < 1e-9:
            ties += 1
        elif difference > 0:
            wins += 1
        else:
            losses += 1
    return WinRate(a, b, wins, ties, losses)
