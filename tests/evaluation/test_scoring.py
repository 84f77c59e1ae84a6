"""The score formula on hand-made rubrics with known answers: negative criteria, clamping, ungraded verdicts,
sections, the 95% t interval, percentiles and win rates."""

from __future__ import annotations

import math

import pytest

from apps.evaluation.scoring import Graded, mean_interval, percentile, score, section_scores, win_rate


def test_the_score_is_the_met_weight_over_the_positive_weight() -> None:
    graded = [Graded(3, "met"), Graded(2, "unmet"), Graded(1, "met"), Graded(-2, "unmet")]

    assert score(graded) == pytest.approx(4 / 6)


def test_a_met_negative_criterion_subtracts_its_weight() -> None:
    graded = [Graded(3, "met"), Graded(2, "met"), Graded(1, "unmet"), Graded(-2, "met")]

    assert score(graded) == pytest.approx((3 + 2 - 2) / 6)


def test_the_score_is_clamped_at_zero_when_errors_outweigh_what_was_met() -> None:
    graded = [Graded(1, "met"), Graded(2, "unmet"), Graded(-3, "met"), Graded(-2, "met")]

    assert score(graded) == 0.0


def test_the_score_never_exceeds_one() -> None:
    graded = [Graded(2, "met"), Graded(1, "met"), Graded(-1, "unmet")]

    assert score(graded) == 1.0


def test_an_ungraded_criterion_counts_neither_way() -> None:
    graded = [Graded(3, "met"), Graded(2, "ungraded"), Graded(1, "unmet"), Graded(-2, "ungraded")]

    # As if the rubric were 3 (met) and 1 (unmet): neither guessed met nor unmet.
    assert score(graded) == pytest.approx(3 / 4)


def test_a_rubric_with_nothing_positive_graded_has_no_score() -> None:
    assert score([Graded(2, "ungraded"), Graded(-1, "met")]) is None


def test_section_scores_use_the_same_formula_within_each_section() -> None:
    graded = [
        Graded(2, "met", "facts"),
        Graded(2, "unmet", "facts"),
        Graded(-1, "met", "facts"),
        Graded(1, "met", "style"),
    ]

    assert section_scores(graded) == {"facts": pytest.approx(0.25), "style": 1.0}


def test_the_mean_has_a_student_t_interval() -> None:
    values = [0.2, 0.4, 0.6, 0.8]

    found = mean_interval(values)

    # mean 0.5, sd 0.2582, t(3) = 3.182: half-width 0.4108.
    assert found.mean == pytest.approx(0.5)
    assert found.half_width == pytest.approx(3.182 * 0.258199 / 2, rel=1e-3)
    assert found.n == 4


def test_one_task_has_a_mean_but_no_interval_and_none_has_neither() -> None:
    assert mean_interval([0.7]).low is None and mean_interval([0.7]).mean == 0.7
    assert mean_interval([]).mean is None


def test_the_interval_stays_within_zero_and_one() -> None:
    found = mean_interval([0.0, 0.0, 1.0])

    assert found.low == 0.0 and found.high == 1.0


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([100, 200, 300, 400, 500], 50) == 300
    assert percentile([100, 200, 300, 400, 500], 90) == pytest.approx(460)
    assert percentile([], 50) is None


def test_win_rates_count_ties_as_half_on_tasks_both_answered() -> None:
    rate = win_rate("a", "b", {1: 0.9, 2: 0.5, 3: 0.2, 4: 0.7}, {1: 0.5, 2: 0.5, 3: 0.4})

    assert (rate.wins, rate.ties, rate.losses) == (1, 1, 1)
    assert rate.rate is not None and math.isclose(rate.rate, 0.5)
