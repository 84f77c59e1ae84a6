"""Two application instances sharing Redis: a client of one follows, resyncs and cancels a run of the other.

Each instance is the full ASGI stack on its own channel-layer instance (see tests/chat/redis_instances.py), as
two Daphne processes would be. Skipped unless ``REDIS_URL`` is set.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat.conftest import Reassembler, Room, held_panel, turn_ended
from tests.chat.redis_instances import REDIS_URL, second_instance, two_instance_layers
from tests.fakes.upstream import FakeUpstream

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set"),
]


@pytest.fixture(autouse=True)
def _two_layers(settings: Any) -> None:
    settings.CHANNEL_LAYERS = two_instance_layers()


async def test_a_client_of_one_instance_sees_a_run_started_through_the_other(
    room: Room, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0.002
    watcher = await room.open(app=second_instance())
    starter = await room.open()
    await starter.send({"type": "send", "prompt": "Redis or RabbitMQ?", "panel": room.panel.pk})
    started = await starter.receive_until(lambda f: f["type"] == "snapshot")
    seen = Reassembler()

    def until_end(frame: dict[str, Any]) -> bool:
        seen.apply(frame)
        return turn_ended(started["turn"])(frame)

    ended = await watcher.receive_until(until_end)
    assert ended["status"] == "done" and seen.gaps == 0
    turn = await room.turn(started["turn"])
    assert seen.texts["final"] == turn.final_text
    await starter.close()
    await watcher.close()


async def test_a_snapshot_and_a_cancel_cross_instances(room: Room, endpoint: FakeUpstream) -> None:
    # Held for good after 8 words: the cancel certainly reaches a running turn.
    panel, (_never,) = await held_panel(room, endpoint, 8)
    starter = await room.open()
    await starter.send({"type": "send", "prompt": "Explain Raft", "panel": panel.pk})
    started = await starter.receive_until(lambda f: f["type"] == "snapshot")
    turn_id = started["turn"]
    seen = Reassembler()

    def streamed_some(frame: dict[str, Any]) -> bool:
        seen.apply(frame)
        return len(seen.texts.get("seat-1", "")) > 20

    # The words before the hold may all be in the turn's first snapshot (held for a window, it covers them).
    if not streamed_some(started):
        await starter.receive_until(streamed_some)

    other = await room.open(app=second_instance())
    assert other.frames[0]["running"] == [turn_id]
    await other.send({"type": "resync", "turn": turn_id})
    snapshot = await other.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn_id)
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    assert snapshot["status"] == "running" and any(len(t) > 20 for t in texts.texts.values())

    await other.send({"type": "cancel", "turn": turn_id})

    def strict_until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn_id)(frame)

    ended = await other.receive_until(strict_until_end, timeout=10)
    assert ended["status"] == "cancelled"
    assert (await room.turn(turn_id)).status == "cancelled"
    await starter.close()
    await other.close()
