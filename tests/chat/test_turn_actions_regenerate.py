"""Regenerating the last turn: the same prompt and panel run again as a new version shown in its place; the
earlier versions are kept and can be shown again (the footer's "1/2" with previous and next), which lasts
across reloads; later turns are asked with the shown version as their history."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from apps.chat.models import Turn
from apps.chat.services import (
    ChatError,
    fusion_request_for,
    turn_create,
    turn_regenerate,
    turn_version_create,
)
from tests.chat.conftest import Room, turn_ended

pytestmark = pytest.mark.django_db(transaction=True)


def page_of(room: Room) -> str:
    client = Client()
    client.force_login(room.user)  # type: ignore[arg-type]
    return client.get(reverse("chat:conversation", args=[room.conversation.pk])).content.decode()


def versions(room: Room) -> list[tuple[int, int, bool, str]]:
    return list(
        Turn.objects.filter(conversation=room.conversation)
        .order_by("position", "version")
        .values_list("position", "version", "shown", "status")
    )


async def test_regenerate_keeps_both_versions_and_switching_lasts_across_reloads(room: Room) -> None:
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Name a prime", "panel": room.panel.pk})
    first = await socket.receive_until(turn_ended())
    assert 'data-turn-action="regenerate"' in first["html"]

    await socket.send({"type": "regenerate", "turn": first["turn"]})
    # The new version's first snapshot; a run of models without a pause may have ended within its window.
    started = await socket.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] != first["turn"])
    second_id = started["turn"]
    # The new version takes the old one's place on every page: same position.
    assert 'data-position="1"' in started["html"]
    second = started if turn_ended()(started) else await socket.receive_until(turn_ended(second_id))
    assert second["status"] == "done" and "2/2" in second["html"]
    assert await sync_to_async(versions)(room) == [(1, 1, False, "done"), (1, 2, True, "done")]
    old, new = await room.turn(first["turn"]), await room.turn(second_id)
    assert new.prompt == old.prompt and new.panel_snapshot == old.panel_snapshot

    page = await sync_to_async(page_of)(room)
    assert f'id="turn-{second_id}"' in page and f'id="turn-{first["turn"]}"' not in page
    assert 'aria-label="Version 2 of 2"' in page

    await socket.send({"type": "version", "turn": second_id, "version": 1})
    switched = await socket.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == first["turn"])
    assert 'aria-label="Version 1 of 2"' in switched["html"] and 'data-position="1"' in switched["html"]
    await socket.close()
    assert await sync_to_async(versions)(room) == [(1, 1, True, "done"), (1, 2, False, "done")]
    page = await sync_to_async(page_of)(room)
    assert f'id="turn-{first["turn"]}"' in page and f'id="turn-{second_id}"' not in page


async def test_only_the_last_turn_is_regenerated_and_never_while_a_run_goes_on(room: Room) -> None:
    def make() -> tuple[Turn, Turn]:
        snapshot = room.panel.snapshot()
        one = turn_create(conversation=room.conversation, prompt="One", panel_snapshot=snapshot)
        two = turn_create(conversation=room.conversation, prompt="Two", panel_snapshot=snapshot)
        Turn.objects.filter(pk=one.pk).update(status="done")
        return one, two

    one, two = await sync_to_async(make)()
    where: dict[str, Any] = {"user": room.user, "conversation_id": room.conversation.pk}
    with pytest.raises(ChatError, match="run is in progress"):
        await turn_regenerate(**where, turn_id=two.pk)
    await sync_to_async(Turn.objects.filter(pk=two.pk).update)(status="done")
    with pytest.raises(ChatError, match="Only the last turn"):
        await turn_regenerate(**where, turn_id=one.pk)
    with pytest.raises(Turn.DoesNotExist):
        await turn_regenerate(**{**where, "conversation_id": room.conversation.pk + 1000}, turn_id=two.pk)
    assert await sync_to_async(Turn.objects.count)() == 2


async def test_a_later_turn_is_asked_with_the_shown_version_as_its_history(room: Room) -> None:
    def make() -> tuple[Any, Any]:
        snapshot = room.panel.snapshot()
        first = turn_create(conversation=room.conversation, prompt="Pick one", panel_snapshot=snapshot)
        Turn.objects.filter(pk=first.pk).update(status="done", final_text="Version one's answer")
        again = turn_version_create(turn=first, prompt="Pick one")
        Turn.objects.filter(pk=again.pk).update(status="done", final_text="Version two's answer")
        Turn.objects.filter(pk=again.pk).update(shown=False)
        Turn.objects.filter(pk=first.pk).update(shown=True)
        later = turn_create(conversation=room.conversation, prompt="And then?", panel_snapshot=snapshot)
        return later.position, [prior.answer for prior in fusion_request_for(turn=later).history]

    position, history = await sync_to_async(make)()
    assert position == 2
    assert history == ["Version one's answer"]
