"""Waits longer than a Redis client's default 5 s socket timeout: an idle socket, a late cancel, a late join.

A Redis connection that waits for messages must not take a quiet moment for a failure: when it did (redis-py 8
made 5 s the default read timeout), idle sockets closed with 1011 and a run's recorder stopped hearing cancels
and snapshot requests once its channel had been quiet that long. The failure shows where an instance has
nothing else to receive: a run whose page was closed, a socket nobody talks to. Each test here waits past 5 s,
on the layer configuration settings build, on one instance and across two (tests/chat/redis_instances.py).
Skipped unless ``REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer, Turn
from apps.chat.runs import run_task
from apps.panels.models import Panel, PanelMember
from tests.chat.conftest import Reassembler, Room, Socket, turn_ended
from tests.chat.redis_instances import REDIS_URL, second_instance, two_instance_layers
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set"),
]

IDLE_S = 12.0
LATE_S = 8.0
# One seat streams 44 words at 4 a second: 10.75 s, so the run is still in its panel phase at LATE_S.
SLOW_ANSWER = " ".join(f"word{n}" for n in range(44))
SLOW_PACE = 4.0


@pytest.fixture(autouse=True)
def _two_layers(settings: Any) -> None:
    settings.CHANNEL_LAYERS = two_instance_layers()


@pytest.fixture
async def slow_panel(room: Room, endpoint: FakeUpstream) -> int:
    """A panel of one slow seat, with a judge and a writer on the fake endpoint too: a call to them shows."""
    endpoint.script("slow", ModelScript(text=SLOW_ANSWER, tokens_per_s=SLOW_PACE))

    owner: Any = room.user

    def make() -> int:
        panel = Panel.objects.create(
            owner=owner, name="Slow", slug="slow", judge_model="fake/judge", writer_model="fake/writer"
        )
        PanelMember.objects.create(panel=panel, position=1, model_id="fake/slow")
        return panel.pk

    return await sync_to_async(make)()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def still_open(socket: Socket) -> bool:
    """Nothing arrived while idle (no close, no error frame) and the socket's application is still running."""
    return await socket.communicator.receive_nothing(timeout=0.1) and not socket.communicator.future.done()


async def start_slow_run(room: Room, panel_id: int) -> tuple[int, float]:
    """Start a run of the slow panel from a page on the first instance, then close that page (the run goes
    on: it belongs to the server); the turn id and the start time."""
    starter = await room.open()
    await starter.send({"type": "send", "prompt": "Take your time", "panel": panel_id})
    started = await starter.receive_until(lambda f: f["type"] == "snapshot")
    await starter.close()
    return started["turn"], asyncio.get_running_loop().time()


def instance_app(name: str) -> Any:
    return second_instance() if name == "other instance" else None


async def follow_to_end(socket: Socket, turn_id: int) -> tuple[dict[str, Any], Reassembler]:
    """Read ``socket`` until ``turn_id`` ends; the last frame and the texts rebuilt from what came."""
    seen = Reassembler()

    def until_end(frame: dict[str, Any]) -> bool:
        seen.apply(frame)
        return turn_ended(turn_id)(frame)

    return await socket.receive_until(until_end), seen


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - asyncio.get_running_loop().time()))


async def test_idle_sockets_on_both_instances_stay_open_and_stream_the_next_runs(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    here = await room.open()
    there = await room.open(app=second_instance())

    await asyncio.sleep(IDLE_S)
    assert await still_open(here), "the first instance's socket did not outlive the idle time"
    assert await still_open(there), "the second instance's socket did not outlive the idle time"

    # A run started on each instance after the idle time reaches both sockets, whole.
    for starter in (here, there):
        await starter.send({"type": "send", "prompt": "Still there?", "panel": room.panel.pk})
        turn_id = (await starter.receive_until(lambda f: f["type"] == "snapshot"))["turn"]
        for socket in (here, there):
            ended, seen = await follow_to_end(socket, turn_id)
            assert ended["status"] == "done" and seen.gaps == 0
            assert seen.texts["final"] == (await room.turn(turn_id)).final_text
    assert errors_logged(caplog) == []
    await here.close()
    await there.close()


@pytest.mark.parametrize("canceller", ["same instance", "other instance"])
async def test_a_cancel_sent_after_the_redis_block_still_stops_the_run(
    room: Room, endpoint: FakeUpstream, slow_panel: int, canceller: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    turn_id, started_at = await start_slow_run(room, slow_panel)

    await sleep_until(started_at + LATE_S)
    assert (await room.turn(turn_id)).status == Turn.Status.RUNNING, "the run must still be going"
    assert endpoint.requests_for("slow") and not endpoint.requests_for("judge")
    page = await room.open(app=instance_app(canceller))
    assert page.frames[0]["running"] == [turn_id]
    await page.send({"type": "cancel", "turn": turn_id})

    ended = await page.receive_until(turn_ended(turn_id), timeout=5)
    assert ended["status"] == "cancelled"
    task = run_task(turn_id)
    if task is not None:
        await asyncio.wait_for(task, timeout=5)
    turn = await room.turn(turn_id)
    assert turn.status == Turn.Status.CANCELLED and turn.failure_reason == "cancelled"
    assert endpoint.requests_for("judge") == [] and endpoint.requests_for("writer") == []
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=turn_id, seat=1)
    assert answer.content and answer.content != SLOW_ANSWER, "cut off mid-answer, what streamed kept"
    assert errors_logged(caplog) == []
    await page.close()


@pytest.mark.parametrize("joiner_on", ["same instance", "other instance"])
async def test_a_viewer_joining_after_the_redis_block_gets_the_live_snapshot_at_once(
    room: Room, slow_panel: int, settings: Any, joiner_on: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Far beyond the wait below: only the run's recorder can answer in time, never the database fallback.
    settings.CHAT_SNAPSHOT_TIMEOUT_SECONDS = 60.0
    turn_id, started_at = await start_slow_run(room, slow_panel)

    await sleep_until(started_at + LATE_S)
    joiner = await room.open(app=instance_app(joiner_on))
    assert joiner.frames[0]["running"] == [turn_id]
    loop = asyncio.get_running_loop()
    asked_at = loop.time()
    await joiner.send({"type": "resync", "turn": turn_id})
    snapshot = await joiner.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn_id, 5)
    waited = loop.time() - asked_at
    assert snapshot["status"] == "running" and waited < 2.0, f"the snapshot took {waited:.2f} s"
    # The live snapshot and the deltas after it join exactly: no gap, no duplicate.
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    assert len(texts.texts["seat-1"]) > len(SLOW_ANSWER) // 2

    def strictly_until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn_id)(frame)

    ended = await joiner.receive_until(strictly_until_end, timeout=15)
    assert ended["status"] == "done"
    turn = await room.turn(turn_id)
    assert texts.texts["seat-1"] == SLOW_ANSWER and texts.texts["final"] == turn.final_text
    assert errors_logged(caplog) == []
    await joiner.close()
