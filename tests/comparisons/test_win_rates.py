"""Each panel's win rate against its single-model baselines: counts, ties as half a win, a Wilson interval."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse

from apps.chat.services import conversation_create
from apps.comparisons.selectors import wilson_interval, win_rates_for
from apps.panels.models import Panel
from tests.comparisons.conftest import comparison_make, done_turn, fake_panel


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Reference values of the Wilson score interval at 95% (z = 1.96).
        (8, 10, 0.4902, 0.9433),
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
        (45, 100, 0.3561, 0.5476),
    ],
)
def test_the_wilson_interval_has_its_textbook_values(successes: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(successes, n) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_no_votes_give_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _votes(owner: Any, panel: Panel | None, outcomes: list[str], *, start: int = 1) -> None:
    """Voted comparisons of ``panel`` with these outcomes ("panel", "baseline", "tie"), in both A/B orders."""
    conversation = conversation_create(owner=owner)
    for index, outcome in enumerate(outcomes):
        baseline_is_a = index % 2 == 0
        if outcome == "tie":
            vote = "tie"
        else:
            baseline_letter = "a" if baseline_is_a else "b"
            panel_letter = "b" if baseline_is_a else "a"
            vote = baseline_letter if outcome == "baseline" else panel_letter
        turn = done_turn(conversation, panel=panel, position=start + index)
        comparison_make(turn, owner=owner, baseline_is_a=baseline_is_a, vote=vote, cost=0.001)


@pytest.mark.django_db
def test_wins_losses_and_ties_are_counted_per_panel_with_ties_as_half() -> None:
    alice = get_user_model().objects.create_user("alice")
    bob = get_user_model().objects.create_user("bob")
    demo = Panel.objects.get(owner=None, slug="demo")
    mine = fake_panel(alice)
    _votes(alice, demo, ["panel"] * 7 + ["baseline"] * 2 + ["tie"])
    _votes(alice, mine, ["baseline", "tie"])
    _votes(bob, demo, ["baseline"] * 5)  # someone else's votes count for them only
    # Unvoted comparisons do not count.
    conversation = conversation_create(owner=alice)
    comparison_make(done_turn(conversation, panel=demo), owner=alice)

    rates = win_rates_for(user=alice)

    assert [rate.panel_name for rate in rates] == ["Demo (offline)", "Fake panel"]
    demo_rate, mine_rate = rates
    assert (demo_rate.wins, demo_rate.losses, demo_rate.ties, demo_rate.n) == (7, 2, 1, 10)
    assert demo_rate.rate == pytest.approx(0.75)
    assert (demo_rate.low, demo_rate.high) == wilson_interval(7.5, 10)
    assert demo_rate.baseline_cost == pytest.approx(0.01)
    assert (mine_rate.wins, mine_rate.losses, mine_rate.ties, mine_rate.n) == (0, 1, 1, 2)
    assert mine_rate.rate == pytest.approx(0.25)
    assert win_rates_for(user=bob)[0].losses == 5


@pytest.mark.django_db
def test_a_deleted_panel_keeps_its_record_under_its_name() -> None:
    alice = get_user_model().objects.create_user("alice")
    panel = fake_panel(alice, name="Short lived")
    _votes(alice, panel, ["panel", "panel"])
    panel.delete()

    rates = win_rates_for(user=alice)

    assert [(rate.panel_name, rate.wins, rate.n) for rate in rates] == [("Short lived", 2, 2)]


@pytest.mark.django_db
def test_the_win_rate_table_shows_the_counts_and_interval_and_says_how_ties_count() -> None:
    alice = get_user_model().objects.create_user("alice")
    demo = Panel.objects.get(owner=None, slug="demo")
    request = RequestFactory().get("/")
    request.user = alice

    empty = render_to_string("comparisons/_win_rates.html", request=request)
    _votes(alice, demo, ["panel"] * 4 + ["baseline"] * 4 + ["tie"] * 2)
    table = render_to_string("comparisons/_win_rates.html", request=request)

    assert "No votes yet" in empty
    assert "a tie counts as half a win" in table and "95% Wilson" in table
    assert '<td data-col="rate">50%</td>' in table
    assert '<td data-col="interval">24% to 76%</td>' in table
    for column, value in (("wins", 4), ("losses", 4), ("ties", 2), ("n", 10)):
        assert f'<td data-col="{column}">{value}</td>' in table


@pytest.mark.django_db
def test_the_comparisons_page_shows_only_the_users_own_win_rates() -> None:
    alice = get_user_model().objects.create_user("alice")
    bob = get_user_model().objects.create_user("bob")
    _votes(alice, fake_panel(alice, name="Alice_panel_x1"), ["panel"])
    client = Client()
    client.force_login(bob)

    page = client.get(reverse("comparisons:index")).content.decode()

    assert "Alice_panel_x1" not in page and "No votes yet" in page
