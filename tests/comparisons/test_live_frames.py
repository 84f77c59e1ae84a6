"""The comparison block in the frames the run recorder sends. They are rendered on the event loop, where the
ORM may not be called: a running turn carries an empty slot, a finished one a slot that loads its block."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from apps.comparisons.models import BaselineChoice, Comparison
from apps.comparisons.services import baseline_tasks
from tests.chat.conftest import Room, held_panel, turn_ended
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_sent_turn_with_the_option_on_ends_with_a_slot_that_loads_its_comparison(
    room: Room, endpoint: FakeUpstream
) -> None:
    # The seat waits for the test after its first words: the turn's first snapshot is certainly of a
    # running turn (a run of models without a pause may end within that snapshot's window).
    panel, (release,) = await held_panel(room, endpoint, 1)
    await sync_to_async(BaselineChoice.objects.create)(user_id=room.user.pk, panel=panel, enabled=True)
    socket = await room.open()
    try:
        await socket.send({"type": "send", "prompt": "Tea or coffee?", "panel": panel.pk})
        first = await socket.receive_until(lambda frame: frame.get("type") == "snapshot")
        release.set()
        ended = await socket.receive_until(turn_ended())
    finally:
        await socket.close()
    async with asyncio.timeout(10):
        await asyncio.gather(*baseline_tasks())

    turn_id = first["turn"]
    slot = f'id="turn-{turn_id}-comparison"'
    assert first["status"] == "running"
    assert slot in first["html"] and "hx-get" not in first["html"].split(slot, 1)[1].split(">", 1)[0]
    assert ended["type"] == "snapshot" and ended["status"] == "done"
    lazy = ended["html"].split(slot, 1)[1].split(">", 1)[0]
    assert f'hx-get="{reverse("comparisons:turn", args=[turn_id])}"' in lazy
    assert 'hx-trigger="load"' in lazy and "data-comparison-slot" in lazy
    comparison = await sync_to_async(Comparison.objects.get)(turn_id=turn_id)
    assert comparison.status == Comparison.Status.DONE and comparison.model_id == "demo/writer"
    assert comparison.text
