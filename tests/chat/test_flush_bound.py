"""The crash bound: however slow a database write, text is saved within ``loss_bound_seconds`` of being seen.

The flusher backs off under load (a write's time, times four, before the next one), capped so that the next
write starts at most ``BACKOFF_LIMIT`` flush intervals after the previous one started. A slow write is made
at the database seam: another connection holds a write on the turn's row (a row lock on PostgreSQL, the
database's write lock on SQLite), so the flusher's own write waits for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from apps.chat.flusher import loss_bound_seconds
from apps.chat.models import PanelAnswer, Turn
from apps.chat.recorder import TurnRecorder
from apps.chat.services import turn_create
from apps.fusion.schemas import SeatDelta, SeatStarted
from tests.chat.conftest import Room

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_WRITE_S = 1.0
# Room for a shared, busy machine; without the cap the wait below is about 4 x SLOW_WRITE_S.
SCHEDULING_SLACK_S = 0.5


async def _events(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (event := await queue.get()) is not None:
        yield event


async def _saved_text(turn_id: int) -> str:
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=turn_id, seat=1)
    return answer.content


async def _wait_saved(turn_id: int, text: str, timeout: float = 10.0) -> float:
    """Poll until seat 1's saved text is ``text``; the monotonic time it was first seen there."""
    async with asyncio.timeout(timeout):
        while await _saved_text(turn_id) != text:
            await asyncio.sleep(0.01)
    return time.monotonic()


@contextmanager
def _write_held_on(turn_id: int) -> Iterator[threading.Event]:
    """Another connection writes the turn's row and keeps its transaction open until the context ends."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Turn.objects.filter(pk=turn_id).update(heartbeat_at=timezone.now())
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, name="slow-write")
    thread.start()
    try:
        yield held
    finally:
        release.set()
        thread.join(10)


async def test_a_slow_write_does_not_push_the_next_flush_past_the_loss_bound(room: Room) -> None:
    def make() -> Turn:
        snapshot = room.panel.snapshot()
        return turn_create(conversation=room.conversation, prompt="Slow database", panel_snapshot=snapshot)

    turn = await sync_to_async(make)()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    recorder = TurnRecorder(turn=turn)
    await recorder.start(_events(queue))
    run = recorder.task
    assert run is not None
    try:
        queue.put_nowait(SeatStarted(seat=1, model="demo/atlas"))
        queue.put_nowait(SeatDelta(seat=1, text="first ", offset=0))
        await _wait_saved(turn.pk, "first ")

        with _write_held_on(turn.pk) as held:
            assert await asyncio.to_thread(held.wait, 10)
            # The flusher picks this up within one interval, then waits on the held row.
            queue.put_nowait(SeatDelta(seat=1, text="second ", offset=6))
            await asyncio.sleep(SLOW_WRITE_S)
        await _wait_saved(turn.pk, "first second ")

        # The flusher's last write took about SLOW_WRITE_S: the next one still comes within the bound.
        fed = time.monotonic()
        queue.put_nowait(SeatDelta(seat=1, text="third", offset=13))
        waited = await _wait_saved(turn.pk, "first second third") - fed
        assert waited <= loss_bound_seconds() + SCHEDULING_SLACK_S, f"saved {waited:.2f} s after it was seen"
    finally:
        queue.put_nowait(None)
        recorder.cancel()
        await asyncio.wait_for(run, 10)
