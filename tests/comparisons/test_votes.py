"""The A/B block, its random order, the vote (once, owner only, CSRF), the composer's option, shared pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.chat.models import Conversation, Turn
from apps.chat.services import conversation_create, share_link_create
from apps.comparisons.models import BaselineChoice, Comparison
from apps.comparisons.services import baseline_enabled_for, comparison_create
from apps.panels.models import Panel
from tests.comparisons.conftest import comparison_make, done_turn

pytestmark = pytest.mark.django_db

FUSED = "Fused_text_w4 from the panel."
SINGLE = "Single_text_r8 from one model."


def _user(name: str) -> Any:
    return get_user_model().objects.create_user(name)


def _client(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _demo() -> Panel:
    return Panel.objects.get(owner=None, slug="demo")


def _setup(*, baseline_is_a: bool = True, **fields: Any) -> tuple[Any, Conversation, Turn, Comparison]:
    alice = _user("alice")
    conversation = conversation_create(owner=alice, title="Alice's")
    turn = done_turn(conversation, panel=_demo(), final=FUSED)
    comparison = comparison_make(turn, owner=alice, baseline_is_a=baseline_is_a, **{"text": SINGLE, **fields})
    return alice, conversation, turn, comparison


def _letters(html: str) -> list[tuple[str, str]]:
    """(letter, which text) for each answer of the block, in page order."""
    found = []
    for letter, body in re.findall(r'data-letter="([AB])".*?<div class="markdown">(.*?)</div>', html, re.S):
        found.append((letter, "fused" if "Fused_text_w4" in body else "single"))
    return found


def _vote(client: Client, comparison: Comparison, vote: str) -> Any:
    return client.post(
        reverse("comparisons:vote", args=[comparison.pk]), {"vote": vote}, headers={"HX-Request": "true"}
    )


def test_the_order_is_drawn_at_random_once_and_kept() -> None:
    alice = _user("alice")
    panel = _demo()
    BaselineChoice.objects.create(user=alice, panel=panel, enabled=True)
    conversation = conversation_create(owner=alice)
    orders = set()
    for position in range(1, 41):
        turn = done_turn(conversation, panel=panel, position=position)
        choice = baseline_enabled_for(user=alice, panel_id=turn.panel_id)
        comparison = comparison_create(user=alice, turn=turn, choice=choice)
        assert comparison is not None
        assert comparison.model_id == "demo/writer"  # the panel's writer when none is chosen
        orders.add(comparison.baseline_is_a)
        comparison.refresh_from_db()
    # Both orders occur (the chance of 40 equal draws is 2^-39).
    assert orders == {True, False}


def test_a_reload_shows_the_same_order_and_no_names_before_the_vote() -> None:
    alice, conversation, turn, _comparison = _setup(baseline_is_a=False)
    client = _client(alice)

    pages = [
        client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode() for _ in range(2)
    ]
    block = client.get(reverse("comparisons:turn", args=[turn.pk])).content.decode()

    for html in [*pages, block]:
        assert _letters(html) == [("A", "fused"), ("B", "single")]
        assert "A is better" in html and "B is better" in html and "Tie" in html
        start = html.index('data-comparison-state="ready"')
        section = html[start : html.index("</section>", start)]
        assert "demo/cedar" not in section and "(fused panel)" not in section


def test_the_other_order_shows_the_single_model_as_a() -> None:
    alice, _conversation, turn, _comparison = _setup(baseline_is_a=True)
    block = _client(alice).get(reverse("comparisons:turn", args=[turn.pk])).content.decode()
    assert _letters(block) == [("A", "single"), ("B", "fused")]


def test_voting_shows_the_names_and_a_second_vote_changes_nothing() -> None:
    alice, _conversation, _turn, comparison = _setup(baseline_is_a=True)
    client = _client(alice)

    first = _vote(client, comparison, "b")
    second = _vote(client, comparison, "a")

    assert first.status_code == 200
    html = first.content.decode()
    assert 'data-comparison-state="voted"' in html
    assert "demo/cedar" in html and "(single model)" in html and "(fused panel)" in html
    assert "the fused answer won" in html
    assert "A is better" not in html
    assert second.status_code == 422
    assert "already has its vote" in second.content.decode()
    comparison.refresh_from_db()
    assert comparison.vote == "b"
    assert comparison.outcome == "panel"


@pytest.mark.parametrize("vote", ["", "c", "A ", "both"])
def test_only_a_b_or_tie_is_a_vote(vote: str) -> None:
    alice, _conversation, _turn, comparison = _setup()
    response = _vote(_client(alice), comparison, vote)
    assert response.status_code == 422
    comparison.refresh_from_db()
    assert comparison.vote == ""


def test_no_vote_before_both_answers_are_done() -> None:
    alice, _conversation, turn, comparison = _setup(status=Comparison.Status.RUNNING, text="")
    client = _client(alice)
    block = client.get(reverse("comparisons:turn", args=[turn.pk])).content.decode()
    assert 'data-comparison-state="waiting"' in block
    assert 'hx-trigger="every 2s"' in block  # it polls while it waits, and only then

    response = _vote(client, comparison, "a")

    assert response.status_code == 422
    comparison.refresh_from_db()
    assert comparison.vote == ""


def test_a_finished_block_stops_polling() -> None:
    alice, _conversation, turn, _comparison = _setup()
    block = _client(alice).get(reverse("comparisons:turn", args=[turn.pk])).content.decode()
    assert "every 2s" not in block


def test_a_baseline_whose_process_died_is_ended_when_its_block_loads(settings: Any) -> None:
    alice, _conversation, turn, comparison = _setup(status=Comparison.Status.RUNNING, text="")
    Comparison.objects.filter(pk=comparison.pk).update(heartbeat_at="2020-01-01T00:00:00Z")

    block = _client(alice).get(reverse("comparisons:turn", args=[turn.pk])).content.decode()

    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.INTERRUPTED
    assert 'data-comparison-state="failed"' in block
    assert "every 2s" not in block


def test_someone_else_cannot_vote_or_read_the_block() -> None:
    _alice, _conversation, turn, comparison = _setup()
    bob = _client(_user("bob"))

    vote = _vote(bob, comparison, "a")
    block = bob.get(reverse("comparisons:turn", args=[turn.pk]))

    assert vote.status_code == 404
    assert block.status_code == 200
    assert "Single_text_r8" not in block.content.decode() and "Fused_text_w4" not in block.content.decode()
    comparison.refresh_from_db()
    assert comparison.vote == ""


def test_a_vote_needs_the_csrf_token() -> None:
    alice, _conversation, _turn, comparison = _setup()
    client = _client(alice, enforce_csrf_checks=True)

    response = client.post(reverse("comparisons:vote", args=[comparison.pk]), {"vote": "a"})

    assert response.status_code == 403
    comparison.refresh_from_db()
    assert comparison.vote == ""


def test_the_baseline_cost_is_shown_and_counted_in_the_turns_total() -> None:
    alice, _conversation, turn, _comparison = _setup(cost=0.0025)  # the turn cost $0.01
    block = _client(alice).get(reverse("comparisons:turn", args=[turn.pk])).content.decode()
    assert "Baseline: " in block and "$0.0025" in block
    assert "turn total with the baseline: $0.013" in block


def test_the_shared_page_shows_a_comparison_only_after_the_vote_and_read_only() -> None:
    alice, conversation, _turn, comparison = _setup()
    _link, token = share_link_create(conversation=conversation)
    visitor = Client()

    before = visitor.get(reverse("chat:shared", args=[token])).content.decode()
    _vote(_client(alice), comparison, "tie")
    after = visitor.get(reverse("chat:shared", args=[token])).content.decode()

    assert "Single_text_r8" not in before and "Blind comparison" not in before
    assert "Single_text_r8" in after and "You called it a tie." in after
    assert "A is better" not in after and "hx-post" not in after
    assert "css/comparisons.css" in after, "the block is styled on the shared page too"


# --- the composer's option -------------------------------------------------------------------------------


def test_the_composer_offers_the_option_for_the_chosen_panel_and_saves_it() -> None:
    alice = _user("alice")
    client = _client(alice)
    home = client.get(reverse("chat:home")).content.decode()
    assert "Compare with a single model" in home
    assert "demo/writer (the panel&#x27;s writer)" in home
    panel = _demo()

    saved = client.post(
        reverse("comparisons:option"),
        {"panel": panel.pk, "baseline_enabled": "1", "baseline_model": "demo/atlas"},
        headers={"HX-Request": "true"},
    )
    again = client.get(reverse("comparisons:option"), {"panel": panel.pk}).content.decode()

    assert saved.status_code == 200 and "demo/atlas answers too" in saved.content.decode()
    choice = BaselineChoice.objects.get(user=alice, panel=panel)
    assert choice.enabled and choice.model_id == "demo/atlas"
    assert re.search(r'id="baseline-enabled"[^>]* checked', again)
    assert '<option value="demo/atlas" selected>' in again


def test_the_option_refuses_a_model_that_cannot_run_and_a_panel_that_is_not_yours(settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    alice, bob = _user("alice"), _user("bob")
    bobs = Panel.objects.create(
        owner=bob, name="Bob's", slug="bobs", judge_model="demo/judge", writer_model="demo/writer"
    )
    client = _client(alice)

    unknown = client.post(
        reverse("comparisons:option"),
        {"panel": _demo().pk, "baseline_enabled": "1", "baseline_model": "openai/gpt-4o"},
    )
    not_yours = client.post(reverse("comparisons:option"), {"panel": bobs.pk, "baseline_enabled": "1"})

    assert unknown.status_code == 422 and "cannot run here" in unknown.content.decode()
    assert not_yours.status_code == 422 and "not yours" in not_yours.content.decode()
    assert not BaselineChoice.objects.exists()
