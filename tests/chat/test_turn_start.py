"""A prompt's trip to the database thread: what it refuses, what it clears away, and what it costs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.chat.models import PanelAnswer, Turn
from apps.chat.services import (
    ChatError,
    conversation_create,
    turn_create,
    turn_running_live,
    turn_start_prepare,
)
from apps.comparisons.models import BaselineChoice
from tests.chat.conftest import demo_panel, user_make

pytestmark = pytest.mark.django_db

# Every prompt pays these on the one database thread of its process, behind every other prompt of a burst:
# the conversation, the panel's seats, the running turns, the turn's four writes (SQLite's transaction
# takes the write lock itself; PostgreSQL takes a row lock too) and the comparison option. A first turn
# reads no history.
FIRST_PROMPT_QUERIES = 10


def _running(conversation: Any, *, beat_seconds_ago: float) -> Turn:
    turn = turn_create(conversation=conversation, prompt="Earlier", panel_snapshot=demo_panel().snapshot())
    Turn.objects.filter(pk=turn.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=beat_seconds_ago))
    return turn


def test_no_running_turn_is_no_live_run() -> None:
    conversation = conversation_create(owner=user_make("alice"))
    assert turn_running_live(conversation_id=conversation.pk) is False


def test_a_turn_with_a_fresh_heartbeat_is_a_live_run_and_stays_running() -> None:
    conversation = conversation_create(owner=user_make("alice"))
    turn = _running(conversation, beat_seconds_ago=1)
    assert turn_running_live(conversation_id=conversation.pk) is True
    turn.refresh_from_db()
    assert turn.status == Turn.Status.RUNNING


def test_a_stale_turn_is_marked_interrupted_and_does_not_count(settings: Any) -> None:
    settings.CHAT_STALE_AFTER_SECONDS = 30
    conversation = conversation_create(owner=user_make("alice"))
    stale = _running(conversation, beat_seconds_ago=120)
    PanelAnswer.objects.filter(turn=stale, seat=1).update(status="streaming", content="Half of it")
    assert turn_running_live(conversation_id=conversation.pk) is False
    stale.refresh_from_db()
    assert stale.status == Turn.Status.INTERRUPTED
    seat = PanelAnswer.objects.get(turn=stale, seat=1)
    assert (seat.status, seat.content) == ("cancelled", "Half of it")


def test_a_turn_that_never_beat_is_stale_once_it_started_long_ago(settings: Any) -> None:
    settings.CHAT_STALE_AFTER_SECONDS = 30
    conversation = conversation_create(owner=user_make("alice"))
    turn = _running(conversation, beat_seconds_ago=0)
    Turn.objects.filter(pk=turn.pk).update(heartbeat_at=None)
    assert turn_running_live(conversation_id=conversation.pk) is True  # just started
    Turn.objects.filter(pk=turn.pk).update(started_at=timezone.now() - timedelta(seconds=120))
    assert turn_running_live(conversation_id=conversation.pk) is False


def test_a_prompt_while_a_run_is_live_is_refused_and_after_a_stale_one_goes_ahead(settings: Any) -> None:
    settings.CHAT_STALE_AFTER_SECONDS = 30
    user = user_make("alice")
    conversation = conversation_create(owner=user)
    live = _running(conversation, beat_seconds_ago=1)
    with pytest.raises(ChatError, match="already in progress"):
        turn_start_prepare(user=user, conversation=conversation, prompt="Next", panel=demo_panel())
    Turn.objects.filter(pk=live.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    turn, request, choice = turn_start_prepare(
        user=user, conversation=conversation, prompt="Next", panel=demo_panel()
    )
    assert (turn.position, turn.status, request.prompt, choice) == (2, Turn.Status.RUNNING, "Next", None)
    assert Turn.objects.get(pk=live.pk).status == Turn.Status.INTERRUPTED


def test_a_first_prompt_costs_one_trip_of_few_queries(django_assert_max_num_queries: Any) -> None:
    user = user_make("alice")
    conversation = conversation_create(owner=user)
    panel = demo_panel()
    row_lock = 1 if connection.features.has_select_for_update else 0
    with django_assert_max_num_queries(FIRST_PROMPT_QUERIES + row_lock):
        turn, request, _choice = turn_start_prepare(
            user=user, conversation=conversation, prompt="Tabs or spaces?", panel=panel
        )
    assert turn.answers.count() == len(request.seats) == len(panel.snapshot()["seats"])
    assert request.history == []


def test_a_later_prompt_gets_the_answered_turns_as_history() -> None:
    user = user_make("alice")
    conversation = conversation_create(owner=user)
    first, _request, _choice = turn_start_prepare(
        user=user, conversation=conversation, prompt="Tabs or spaces?", panel=demo_panel()
    )
    Turn.objects.filter(pk=first.pk).update(status=Turn.Status.DONE, final_text="Spaces.")
    _turn, request, _choice = turn_start_prepare(
        user=user, conversation=conversation, prompt="Why?", panel=demo_panel()
    )
    assert [(prior.prompt, prior.answer) for prior in request.history] == [("Tabs or spaces?", "Spaces.")]


def test_the_comparison_option_is_read_in_the_same_trip() -> None:
    user = user_make("alice")
    conversation = conversation_create(owner=user)
    panel = demo_panel()
    BaselineChoice.objects.create(user=user, panel=panel, enabled=True, model_id="demo/atlas")
    _turn, _request, choice = turn_start_prepare(
        user=user, conversation=conversation, prompt="Tabs or spaces?", panel=panel
    )
    assert choice is not None and choice.model_id == "demo/atlas"
