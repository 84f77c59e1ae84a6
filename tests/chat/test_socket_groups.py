"""The socket joins its conversation's channel-layer group while it is open, and leaves it when it closes."""

from __future__ import annotations

import json
from typing import Any

from channels.layers import get_channel_layer

from apps.chat.layers import InProcessChannelLayer
from tests.chat.conftest import Room


class WatchedLayer(InProcessChannelLayer):
    """The one-process layer, noting who joins and leaves which group (the channel name is the consumer's)."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.joined: list[tuple[str, str]] = []
        self.left: list[tuple[str, str]] = []

    async def group_add(self, group: str, channel: str) -> None:
        self.joined.append((group, channel))
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.left.append((group, channel))
        await super().group_discard(group, channel)


async def test_the_socket_leaves_its_conversations_group_when_it_closes(room: Room, settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.WatchedLayer"}}
    socket = await room.open()
    layer = get_channel_layer()
    assert isinstance(layer, WatchedLayer)
    group = f"conversation.{room.conversation.pk}"
    [(joined, channel)] = layer.joined
    assert joined == group
    await layer.group_send(group, {"type": "chat.frame", "text": json.dumps({"type": "probe"})})
    assert await socket.receive() == {"type": "probe"}

    await socket.close()
    assert layer.left == [(group, channel)]
    # Nothing sent to the group reaches the closed socket's channel any more.
    await layer.group_send(group, {"type": "chat.frame", "text": "too late"})
    await layer.send(channel, {"type": "check"})
    assert await layer.receive(channel) == {"type": "check"}


async def test_relayed_frames_and_page_frames_skip_the_database_check_and_other_messages_keep_it(
    room: Room, monkeypatch: Any
) -> None:
    # Channels' dispatch closes stale database connections before every handler, through this function
    # (its test communicator turns the clean-up itself into a no-op, so the call is what is counted).
    import channels.consumer

    checks: list[int] = []
    real = channels.consumer.aclose_old_connections

    async def counted() -> None:
        checks.append(1)
        await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    socket = await room.open()
    layer = get_channel_layer()
    assert layer is not None
    group = f"conversation.{room.conversation.pk}"
    before = len(checks)
    for number in range(20):
        await layer.group_send(
            group, {"type": "chat.frame", "text": json.dumps({"type": "probe", "n": number})}
        )
    for number in range(20):
        assert await socket.receive() == {"type": "probe", "n": number}
    assert len(checks) == before

    # A frame from the page skips it too: its handler reaches the database only through
    # database_sync_to_async, which closes stale connections itself.
    await socket.send({"type": "resync", "turn": 999999})
    assert (await socket.receive())["type"] == "error"
    assert len(checks) == before

    # Any other message goes through Channels' dispatch, clean-up included.
    snapshot = {"type": "chat.snapshot", "turn": 0, "text": json.dumps({"type": "probe", "n": -1})}
    await layer.group_send(group, snapshot)
    assert await socket.receive() == {"type": "probe", "n": -1}
    assert len(checks) > before
