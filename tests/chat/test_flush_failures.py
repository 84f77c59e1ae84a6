"""A write that fails loses nothing: what it held is written by the next one, and a turn's end still shows.

Failures are made at the database seam: a trigger refuses updates of the seat answers while it exists
(SQLite's ``RAISE(ABORT)``, or a PL/pgSQL function on PostgreSQL), as a database that is briefly away would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from apps.chat.models import PanelAnswer, Turn
from apps.chat.recorder import TurnRecorder
from apps.chat.services import turn_create
from apps.fusion.schemas import RunFailed, SeatDelta, SeatDone, SeatStarted, Timings
from apps.providers.base import Usage
from tests.chat.conftest import Room

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = PanelAnswer._meta.db_table


@contextmanager
def answers_refused() -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER refuse_answers BEFORE UPDATE ON {TABLE} "
                "BEGIN SELECT RAISE(ABORT, 'the database is away'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_answers() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'the database is away'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_answers BEFORE UPDATE ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_answers()"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("DROP TRIGGER refuse_answers")
            else:
                cursor.execute(f"DROP TRIGGER refuse_answers ON {TABLE}")
                cursor.execute("DROP FUNCTION refuse_answers()")


async def _events(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (event := await queue.get()) is not None:
        yield event


async def _answer(turn_id: int) -> PanelAnswer:
    return await sync_to_async(PanelAnswer.objects.get)(turn_id=turn_id, seat=1)


async def _recording(room: Room, settings: Any) -> tuple[Turn, TurnRecorder, asyncio.Queue[Any], Any]:
    settings.CHAT_FLUSH_SECONDS = 0.05

    def make() -> Turn:
        return turn_create(
            conversation=room.conversation, prompt="Away", panel_snapshot=room.panel.snapshot()
        )

    turn = await sync_to_async(make)()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    recorder = TurnRecorder(turn=turn)
    await recorder.start(_events(queue))
    return turn, recorder, queue, recorder.task


async def test_text_and_a_finished_seat_held_by_a_failed_flush_are_written_by_the_next(
    room: Room, settings: Any
) -> None:
    turn, recorder, queue, run = await _recording(room, settings)
    try:
        queue.put_nowait(SeatStarted(seat=1, model="demo/atlas"))
        refused = answers_refused()
        await sync_to_async(refused.__enter__)()
        try:
            queue.put_nowait(SeatDelta(seat=1, text="Kept through a failure.", offset=0))
            done = SeatDone(
                seat=1,
                model="demo/atlas",
                content="Kept through a failure.",
                usage=Usage(),
                timings=Timings(),
            )
            queue.put_nowait(done)
            await asyncio.sleep(0.4)  # several flushes fail meanwhile
            assert (await _answer(turn.pk)).content == ""
        finally:
            await sync_to_async(refused.__exit__)(None, None, None)

        async with asyncio.timeout(5):
            while (answer := await _answer(turn.pk)).status != "done":
                await asyncio.sleep(0.02)
        assert answer.content == "Kept through a failure."
    finally:
        queue.put_nowait(None)
        recorder.cancel()
        await asyncio.wait_for(run, 10)


async def test_a_turn_whose_final_write_fails_still_shows_its_end(room: Room, settings: Any) -> None:
    turn, _recorder, queue, run = await _recording(room, settings)
    viewer = await room.open()
    queue.put_nowait(SeatStarted(seat=1, model="demo/atlas"))
    refused = answers_refused()
    await sync_to_async(refused.__enter__)()
    try:
        queue.put_nowait(RunFailed(reason="all_panels_failed", message="Every panel model failed."))
        ended = await viewer.receive_until(
            lambda f: f.get("type") == "snapshot" and f.get("status") not in (None, "running"), timeout=10
        )
        await asyncio.wait_for(run, 10)
    finally:
        await sync_to_async(refused.__exit__)(None, None, None)
        queue.put_nowait(None)
    assert ended["turn"] == turn.pk and ended["status"] == "failed"
