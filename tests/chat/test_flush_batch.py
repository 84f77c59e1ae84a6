"""The flusher's batched write stores exactly what the ORM's per-row updates do, in a few statements a tick.

``turns_write`` writes a tick as one query for the gone turns plus one ``executemany`` per statement shape
when the speed measure ``flush_batch`` is on, and as one ORM ``update()`` per turn and per answer when it is
off; every test here runs on both paths (``path``), except the statement count, which only the batch bounds.
The database is the real one (SQLite, or PostgreSQL with ``DATABASE_URL``); a failure is made at the database
seam, by a value its CHECK constraint refuses.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from apps.chat.flusher import changes_collect, turns_write
from apps.chat.models import Conversation, PanelAnswer, Turn
from apps.chat.services import conversation_create, turn_create
from apps.chat.state import turn_state_initial
from tests.chat.conftest import demo_panel, user_make

pytestmark = pytest.mark.django_db(transaction=True)

Batch = list[tuple[int, dict[str, Any], dict[int, dict[str, Any]]]]

SEATS = (1, 2, 3)  # the demo panel's
# An aware time outside UTC, with microseconds: both paths must store it as the same instant.
KOLKATA = ZoneInfo("Asia/Kolkata")
HEARTBEAT = dt.datetime(2025, 3, 30, 2, 30, 15, 123456, tzinfo=KOLKATA)
FINISHED = dt.datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
ANALYSIS: dict[str, Any] = {
    "summary": "Les réponses s'accordent — 大体一致 🙂",
    "agreements": [
        {"point": 'quote " and back\\slash', "seats": [1, 3]},
        {"point": "100% sure", "seats": []},
    ],
    "scores": {"1": 0.1 + 0.2, "2": -1e-300, "3": 2.5e10},
    "nested": {"deep": {"deeper": [None, True, False, 0, "", {"k": []}]}},
    "missing": None,
}
TOTALS: dict[str, Any] = {
    "usage": {"prompt_tokens": 1234, "cost": 0.000123456789},
    "steps": [{"name": "panel", "ms": 12.5}],
}


@pytest.fixture(params=["batched", "orm"])
def path(request: pytest.FixtureRequest, settings: Any) -> str:
    """The write path under test: the batched write (the default) or the ORM's per-row updates."""
    settings.SPEED_MEASURES_OFF = frozenset() if request.param == "batched" else frozenset({"flush_batch"})
    return str(request.param)


@pytest.fixture
def conversation() -> Conversation:
    return conversation_create(owner=user_make("alice"))


def turns_make(conversation: Conversation, count: int) -> list[int]:
    snapshot = demo_panel().snapshot()
    return [
        turn_create(conversation=conversation, prompt=f"Turn {n}", panel_snapshot=snapshot).pk
        for n in range(count)
    ]


def write(batch: Batch) -> set[int]:
    # From this thread, the write runs on this thread's connection (what the queries are captured on).
    return async_to_sync(turns_write)(batch)


def turn_fields(n: int = 0, *, finished: bool = True) -> dict[str, Any]:
    """A dirty turn's fields, every kind of value the flusher writes (``n`` makes the texts differ)."""
    fields: dict[str, Any] = {
        "heartbeat_at": HEARTBEAT,
        "status": "done" if finished else "running",
        "phase": "finished" if finished else "writing",
        "analysis": {**ANALYSIS, "n": n},
        "analysis_raw": f'{{"raw": "ünïcödé {n}"}}\n\ttabs; -- not SQL',
        "analysis_error": "",
        "analysis_error_detail": "line one\nline two 'quoted'",
        "final_text": f"The fused answer {n}: **bold** ✓ %s %(name)s",
        "failure_reason": "",
        "error_message": "",
        "totals": TOTALS,
        "cost": 0.1 + 0.7,
    }
    if finished:
        fields["finished_at"] = FINISHED
    return fields


def answer_values(n: int = 0, seat: int = 1) -> dict[str, Any]:
    return {
        "content": f"Seat {seat} of turn {n}: naïve café — 答え",
        "status": "done",
        "error": "",
        "status_code": 200,
        "prompt_tokens": 17 + seat,
        "completion_tokens": 4000 + n,
        "cost": 3.3e-05 * seat,
        "usage_estimated": seat == 2,
        "ttft_ms": 123.456,
        "duration_ms": None,
        "reasoning": "Thinking…\n" * seat,
        "tool_calls": [{"id": "c1", "name": "search", "detail": {"q": "crème brûlée"}, "result": None}],
        "sources": [{"url": "https://example.org/ü?a=1&b=2", "title": "Ex ✓"}],
    }


def answers_all(n: int = 0) -> dict[int, dict[str, Any]]:
    return {seat: answer_values(n, seat) for seat in SEATS}


def stored(model: type[Model], names: list[str], **where: Any) -> tuple[Any, ...]:
    """The row's values as the ORM reads them back."""
    row = model._default_manager.filter(**where).values_list(*names).get()
    return tuple(row)


def stored_raw(model: type[Model], names: list[str], **where: int) -> tuple[Any, ...]:
    """The row's columns exactly as the database holds them (JSON text, datetime strings on SQLite)."""
    meta = model._meta
    columns = ", ".join(f'"{meta.get_field(name).column}"' for name in names)  # type: ignore[union-attr]
    condition = " AND ".join(f'"{meta.get_field(name).column}" = %s' for name in where)  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT {columns} FROM "{meta.db_table}" WHERE {condition}', list(where.values()))
        return tuple(cursor.fetchone())


def statements(captured: CaptureQueriesContext) -> list[str]:
    """The captured statements but the transaction's own (SQLite's BEGIN and COMMIT)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")
    return [query["sql"] for query in captured.captured_queries if not query["sql"].startswith(control)]


def answer_updates(captured: CaptureQueriesContext) -> int:
    """How many answer rows the captured statements updated ("N times: ..." is one ``executemany``)."""
    count = 0
    for query in captured.captured_queries:
        times, _, sql = query["sql"].partition(" times: ")
        if not sql:
            times, sql = "1", query["sql"]
        if sql.startswith(f'UPDATE "{PanelAnswer._meta.db_table}"'):
            count += int(times)
    return count


def test_the_test_changes_cover_every_field_the_flusher_writes(conversation: Conversation) -> None:
    (turn_id,) = turns_make(conversation, 1)
    state = turn_state_initial(Turn.objects.get(pk=turn_id))
    state.dirty, state.status = True, "done"
    for seat in state.seats:
        seat.dirty = True
    fields, answers = changes_collect(state)
    assert set(fields) == set(turn_fields())
    assert set(answers) == set(SEATS)
    assert all(set(values) == set(answer_values()) for values in answers.values())


def test_what_is_written_reads_back_as_given_through_the_orm(path: str, conversation: Conversation) -> None:
    done, running, idle = turns_make(conversation, 3)
    before = stored(Turn, ["status", "final_text", "totals"], pk=idle)
    batch: Batch = [
        (done, turn_fields(1), answers_all(1)),
        (
            running,
            {**turn_fields(2, finished=False), "analysis": None, "cost": None},
            {2: answer_values(2, 2)},
        ),
        (idle, {"heartbeat_at": HEARTBEAT}, {}),
    ]

    assert write(batch) == set()

    for turn_id, fields, answers in batch:
        assert stored(Turn, list(fields), pk=turn_id) == tuple(fields.values())
        for seat, values in answers.items():
            assert stored(PanelAnswer, list(values), turn_id=turn_id, seat=seat) == tuple(values.values())
    assert stored(Turn, ["heartbeat_at"], pk=done) == (HEARTBEAT.astimezone(dt.UTC),)
    # What a tick does not carry stays as it was: the unchanged answers, an idle turn's other fields.
    assert stored(Turn, ["status", "final_text", "totals"], pk=idle) == before
    assert stored(PanelAnswer, ["status", "content"], turn_id=running, seat=1) == ("waiting", "")


def test_the_batched_and_orm_writes_store_identical_rows(settings: Any, conversation: Conversation) -> None:
    batched, orm = turns_make(conversation, 2)
    fields, answers = turn_fields(7), answers_all(7)
    settings.SPEED_MEASURES_OFF = frozenset()
    assert write([(batched, fields, answers)]) == set()
    settings.SPEED_MEASURES_OFF = frozenset({"flush_batch"})
    assert write([(orm, fields, answers)]) == set()

    names = list(fields)
    assert stored_raw(Turn, names, id=batched) == stored_raw(Turn, names, id=orm)
    for seat in SEATS:
        names = list(answers[seat])
        assert stored_raw(PanelAnswer, names, turn=batched, seat=seat) == stored_raw(
            PanelAnswer, names, turn=orm, seat=seat
        )


def test_a_gone_turn_is_reported_and_only_the_others_are_written(
    path: str, conversation: Conversation
) -> None:
    first, last = turns_make(conversation, 2)
    doomed = conversation_create(owner=conversation.owner)
    (gone,) = turns_make(doomed, 1)
    doomed.delete()  # the conversation is deleted under its running turn
    batch: Batch = [(first, turn_fields(1), answers_all(1)), (gone, turn_fields(2), answers_all(2))]
    batch.append((last, {"heartbeat_at": HEARTBEAT}, {3: answer_values(3, 3)}))

    with CaptureQueriesContext(connection) as captured:
        assert write(batch) == {gone}

    assert (
        answer_updates(captured) == 4
    )  # the three of ``first`` and one of ``last``: none of the gone turn's
    assert stored(Turn, ["final_text"], pk=first) == (turn_fields(1)["final_text"],)
    assert stored(PanelAnswer, ["content"], turn_id=first, seat=2) == (answer_values(1, 2)["content"],)
    assert stored(Turn, ["heartbeat_at"], pk=last) == (HEARTBEAT,)
    assert stored(PanelAnswer, ["content"], turn_id=last, seat=3) == (answer_values(3, 3)["content"],)
    assert not Turn.objects.filter(pk=gone).exists()
    assert not PanelAnswer.objects.filter(turn_id=gone).exists()


@pytest.mark.parametrize("count", [2, 50])
def test_the_batched_write_takes_a_few_statements_whatever_the_number_of_turns(
    conversation: Conversation, count: int
) -> None:
    turns = turns_make(conversation, count)
    batch: Batch = [(turn_id, turn_fields(n), answers_all(n)) for n, turn_id in enumerate(turns)]

    with CaptureQueriesContext(connection) as captured:
        assert write(batch) == set()

    # The gone-turn query, then the turns' and the answers' executemany.
    assert len(statements(captured)) == 3, [sql[:80] for sql in statements(captured)]
    assert answer_updates(captured) == count * len(SEATS)
    assert PanelAnswer.objects.filter(turn_id__in=turns, status="done").count() == count * len(SEATS)


def test_turns_with_different_changes_take_one_statement_per_kind(conversation: Conversation) -> None:
    turns = turns_make(conversation, 30)
    shapes = [
        {"heartbeat_at": HEARTBEAT},  # a heartbeat only
        turn_fields(finished=False),  # running, changed
        turn_fields(),  # just finished (with ``finished_at``)
    ]
    batch: Batch = [(turn_id, shapes[n % 3], answers_all(n)) for n, turn_id in enumerate(turns)]

    with CaptureQueriesContext(connection) as captured:
        assert write(batch) == set()

    updates = [query["sql"] for query in captured.captured_queries if " times: UPDATE " in query["sql"]]
    assert sorted(sql.partition(" times:")[0] for sql in updates) == ["10", "10", "10", str(30 * len(SEATS))]
    assert len(statements(captured)) == 5  # the gone-turn query, three kinds of turns, the answers
    assert Turn.objects.filter(pk__in=turns, finished_at=FINISHED).count() == 10


def test_a_failure_inside_the_batch_rolls_the_whole_tick_back(path: str, conversation: Conversation) -> None:
    turns = turns_make(conversation, 3)
    before = [stored(Turn, list(turn_fields()), pk=turn_id) for turn_id in turns]
    batch: Batch = [(turn_id, turn_fields(n), answers_all(n)) for n, turn_id in enumerate(turns)]
    # The last answer written breaks the column's CHECK constraint (a positive small integer).
    batch[-1][2][3]["status_code"] = -1

    with pytest.raises(IntegrityError):
        write(batch)

    assert [stored(Turn, list(turn_fields()), pk=turn_id) for turn_id in turns] == before
    assert not PanelAnswer.objects.filter(turn_id__in=turns).exclude(status="waiting").exists()
    assert not PanelAnswer.objects.filter(turn_id__in=turns).exclude(content="").exists()


def test_a_tick_written_after_a_failed_one_succeeds(path: str, conversation: Conversation) -> None:
    (turn_id,) = turns_make(conversation, 1)
    broken = answers_all(1)
    broken[1]["status_code"] = -1
    with pytest.raises(IntegrityError):
        write([(turn_id, turn_fields(1), broken)])

    assert write([(turn_id, turn_fields(1), answers_all(1))]) == set()
    assert stored(PanelAnswer, ["status_code"], turn_id=turn_id, seat=1) == (200,)
