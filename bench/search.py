"""How long the history sidebar's search takes for a user with thousands of conversations.

``python -m bench --only search``. A fresh SQLite file in a temporary directory (or, with
``BENCH_SEARCH_DATABASE_URL``, that database: it is migrated, and the bench's users are deleted at the end)
holds the searching user's 3,000 conversations of 3 turns each and as many for each of three other users.
Prints the median time of ``conversation_search_for`` for a word in one old prompt (every turn of the user is
read), a word in every prompt (stops after the first page), a title and a word nowhere, the number of queries
each made, and the database's plan for the query.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONVERSATIONS = 3000
TURNS = 3
OTHER_USERS = 3
RUNS = 20
USERNAME_PREFIX = "bench-search-"
TRIGRAM_INDEX = "bench_search_turn_prompt_trgm"


def _populate(user_model: Any) -> Any:
    from apps.chat.models import Conversation, Turn

    users = [user_model.objects.create_user(username=f"{USERNAME_PREFIX}{n}") for n in range(OTHER_USERS + 1)]
    for user in users:
        made = Conversation.objects.bulk_create(
            (Conversation(owner=user, title=f"Chat number {n}") for n in range(CONVERSATIONS)), batch_size=500
        )
        Turn.objects.bulk_create(
            (
                Turn(
                    conversation=conversation,
                    position=position,
                    prompt=f"Question {position} of chat {conversation.pk} about routine things, " * 4,
                    status="done",
                )
                for conversation in made
                for position in range(1, TURNS + 1)
            ),
            batch_size=500,
        )
    searcher = users[0]
    oldest = Conversation.objects.filter(owner=searcher).order_by("updated_at", "pk").first()
    assert oldest is not None
    Turn.objects.filter(conversation=oldest, position=2).update(prompt="How long should a levain ferment?")
    return searcher


def _time(search: Any, user: Any, query: str) -> tuple[float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    search(user=user, query=query)  # warm the page cache
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        hits = search(user=user, query=query)
        times.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        search(user=user, query=query)
    return statistics.median(times), len(hits), len(queries.captured_queries)


def _measure() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.chat.models import Conversation
    from apps.chat.search import conversation_search_for

    user_model = get_user_model()
    started = time.perf_counter()
    searcher = _populate(user_model)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum would have done by the time anyone searches
            cursor.execute("ANALYZE")
    total = Conversation.objects.count()
    print(
        f"{connection.vendor}: {CONVERSATIONS:,} conversations x {TURNS} turns for the searcher, "
        f"{total:,} in all ({time.perf_counter() - started:.1f} s to insert)"
    )
    try:
        _searches(conversation_search_for, searcher)
        _plan_print(searcher)
        if connection.vendor == "postgresql":
            # Not shipped: what a trigram index on the prompts would change (pg_trgm, a trusted extension).
            with connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                cursor.execute(
                    f"CREATE INDEX {TRIGRAM_INDEX} ON chat_turn USING gin (UPPER(prompt) gin_trgm_ops)"
                )
                cursor.execute("ANALYZE chat_turn")
            try:
                print("  with a trigram index on UPPER(prompt):")
                _searches(conversation_search_for, searcher)
                _plan_print(searcher)
            finally:
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP INDEX {TRIGRAM_INDEX}")
    finally:
        user_model.objects.filter(username__startswith=USERNAME_PREFIX).delete()


def _searches(search: Any, searcher: Any) -> None:
    for label, query in (
        ("a word in one old prompt", "levain"),
        ("a word in every prompt", "routine"),
        ("a title", "chat number 1234"),
        ("a word nowhere", "zzyzx"),
    ):
        median, hits, queries = _time(search, searcher, query)
        print(f"  {label:<26} {median * 1000:7.2f} ms (median of {RUNS}), {hits} hits, {queries} query")


def _plan_print(searcher: Any) -> None:
    from django.db import connection

    sql, params = _plan_sql(searcher)
    with connection.cursor() as cursor:
        explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(explain + sql, params)
        print("  plan:")
        for row in cursor.fetchall():
            print("    " + " ".join(str(part) for part in row))


def _plan_sql(user: Any) -> tuple[str, tuple[Any, ...]]:
    from apps.chat.search import conversation_search_rows

    sql, params = conversation_search_rows(user_id=user.pk, query="levain").query.sql_with_params()
    return sql, tuple(params)


def run() -> None:
    """Migrate a fresh database in a subprocess, then measure in another (settings read the URL at start)."""
    url = os.environ.get("BENCH_SEARCH_DATABASE_URL", "")
    with tempfile.TemporaryDirectory(prefix="fusionroom-search-") as tmp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
            "DATABASE_URL": url or f"sqlite:///{Path(tmp) / 'search.sqlite3'}",
        }
        manage = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(manage, cwd=ROOT, env=env, check=True)
        measure = [sys.executable, "-c", "import bench.search as s; s._measure()"]
        subprocess.run(measure, cwd=ROOT, env=env, check=True)
