"""The score-against-cost chart as numbers for an inline SVG template (no chart library, no inline style):
each contender a point at (answer cost per task, mean score) with its 95% interval as a vertical bar."""

from __future__ import annotations

from dataclasses import dataclass

from apps.evaluation.selectors import ContenderResult

WIDTH = 640
HEIGHT = 360
LEFT = 64
RIGHT = 24
TOP = 32
BOTTOM = 52


@dataclass(frozen=True)
class Point:
    label: str
    is_demo: bool
    x: float
    y: float
    y_low: float
    y_high: float
    label_x: float
    label_y: float
    label_anchor: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    points: list[Point]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    unpriced: list[str]


def _money(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value < 0.01 else f"${value:.3f}" if value < 1 else f"${value:.2f}"


def _label_y(placed: list[Point], x: float, y: float) -> float:
    """Above the point, moved up past labels already placed near it (points at the same cost and score,
    as the free demo models are, would otherwise print their names on top of each other)."""
    label_y = y - 8
    while any(abs(p.x - x) < 160 and abs(p.label_y - label_y) < 14 for p in placed):
        label_y -= 14
    return round(max(label_y, 10.0), 1)


def chart_build(contenders: list[ContenderResult]) -> Chart | None:
    """None when no contender has a score yet. Contenders whose cost is unknown are listed, not drawn."""
    scored = [c for c in contenders if c.interval.mean is not None]
    if not scored:
        return None
    drawable = [c for c in scored if c.answer_cost_per_task is not None]
    unpriced = [c.label for c in scored if c.answer_cost_per_task is None]
    top_cost = max((c.answer_cost_per_task or 0.0 for c in drawable), default=0.0)
    # All free (the demo models): the axis still runs to a small sum, so the points sit at $0 on its left.
    x_max = top_cost * 1.15 if top_cost > 0 else 0.01
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x_of(cost: float) -> float:
        return round(LEFT + plot_w * cost / x_max, 1)

    def y_of(value: float) -> float:
        return round(TOP + plot_h * (1 - value), 1)

    points: list[Point] = []
    for contender in drawable:
        mean = contender.interval.mean or 0.0
        x = x_of(contender.answer_cost_per_task or 0.0)
        right_half = x > LEFT + plot_w * 0.6
        ci = ""
        if contender.interval.low is not None and contender.interval.high is not None:
            ci = f", 95% interval {contender.interval.low:.1%} to {contender.interval.high:.1%}"
        points.append(
            Point(
                label=contender.label,
                is_demo=contender.is_demo,
                x=x,
                y=y_of(mean),
                y_low=y_of(contender.interval.low if contender.interval.low is not None else mean),
                y_high=y_of(contender.interval.high if contender.interval.high is not None else mean),
                label_x=x - 8 if right_half else x + 8,
                label_y=_label_y(points, x, y_of(mean)),
                label_anchor="end" if right_half else "start",
                title=(
                    f"{contender.label}: {mean:.1%}{ci}; "
                    f"{_money(contender.answer_cost_per_task or 0.0)} per task (answers)"
                ),
            )
        )
    x_ticks = [Tick(x_of(x_max * i / 4), _money(x_max * i / 4)) for i in range(5)]
    y_ticks = [Tick(y_of(i / 4), f"{i * 25}%") for i in range(5)]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        points=points,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        unpriced=unpriced,
    )
