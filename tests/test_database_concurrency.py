"""Concurrent writers on the configured database: every write waits its turn, none fails.

Under Daphne every request and socket gets a thread (and so a database connection) of its own, so writers
really do run at once. On SQLite a transaction that reads and then writes must take the write lock when it
begins (``transaction_mode: IMMEDIATE``): a deferred one that finds another writer holding the lock when it
upgrades fails at once with "database is locked", whatever the busy timeout says. These tests start a few
dozen writers on the file-backed test database and run the app's own write paths in them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import close_old_connections, connection, connections, transaction
from django.utils import timezone

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey
from apps.chat.models import Conversation, PanelAnswer, Turn
from apps.chat.services import conversation_create, turn_create, turn_mark_interrupted
from apps.panels.models import Panel
from tests.chat.conftest import user_make

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 36
ROUNDS = 4


def run_at_once(jobs: list[Callable[[], Any]]) -> list[BaseException]:
    """Run every job in a thread of its own, released together; return what they raised."""
    gate = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def worker(job: Callable[[], Any]) -> None:
        try:
            gate.wait()
            job()
        except BaseException as exc:
            errors.append(exc)
        finally:
            # Each thread opened a connection of its own; SQLite's are kept open unless closed here.
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(worker, jobs))
    close_old_connections()
    return errors


def test_the_sqlite_database_takes_the_write_lock_when_a_transaction_begins() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("a SQLite setting")
    assert getattr(connection, "transaction_mode", None) == "IMMEDIATE"
    assert connection.settings_dict["OPTIONS"]["timeout"] >= 10


def test_dozens_of_concurrent_writers_of_turns_sessions_keys_and_flushes_all_succeed() -> None:
    user = user_make("alice")
    panel = Panel.objects.get(owner=None, slug="demo")
    shared = [conversation_create(owner=user) for _ in range(3)]
    _, raw = api_key_create(user=user, name="load")
    key_id = ApiKey.objects.get(user=user).pk
    assert raw

    def turns_on_shared_conversations(index: int) -> Callable[[], None]:
        # Read the last position, then insert: the read-then-write transaction that used to fail.
        def job() -> None:
            for _ in range(ROUNDS):
                conversation = Conversation.objects.get(pk=shared[index % len(shared)].pk)
                turn_create(
                    conversation=conversation,
                    prompt=f"writer {index}",
                    panel_snapshot=panel.snapshot(),
                    panel=panel,
                )

        return job

    def new_conversation_and_flushes(index: int) -> Callable[[], None]:
        def job() -> None:
            conversation = conversation_create(owner=user)
            turn = turn_create(
                conversation=conversation, prompt=f"own {index}", panel_snapshot=panel.snapshot()
            )
            for round_ in range(ROUNDS):
                # What the recorder's flush writes in one transaction: the turn's fields, each answer's text.
                with transaction.atomic():
                    Turn.objects.filter(pk=turn.pk).update(
                        heartbeat_at=timezone.now(), final_text="x" * round_
                    )
                    PanelAnswer.objects.filter(turn=turn).update(content=f"text {round_}")
            turn_mark_interrupted(turn_id=turn.pk, message="test")

        return job

    def sessions_and_key_use(index: int) -> Callable[[], None]:
        def job() -> None:
            for round_ in range(ROUNDS):
                session = SessionStore()
                session["n"] = round_
                session.create()
                session["n"] = round_ + 1
                session.save()
                ApiKey.objects.filter(pk=key_id).update(
                    last_used_at=timezone.now() - timedelta(seconds=index)
                )

        return job

    makers = (turns_on_shared_conversations, new_conversation_and_flushes, sessions_and_key_use)
    errors = run_at_once([makers[i % len(makers)](i) for i in range(WRITERS)])

    assert errors == []
    per_shared = Turn.objects.filter(conversation__in=shared).values_list("conversation_id", "position")
    by_conversation: dict[int, list[int]] = {}
    for conversation_id, position in per_shared:
        by_conversation.setdefault(conversation_id, []).append(position)
    # Every writer's turns are there, numbered without a gap or a repeat.
    assert sum(len(positions) for positions in by_conversation.values()) == (WRITERS // 3) * ROUNDS
    for positions in by_conversation.values():
        assert sorted(positions) == list(range(1, len(positions) + 1))
