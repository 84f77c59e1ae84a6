from __future__ import annotations

from typing import Any

import pytest
from channels.exceptions import ChannelFull
from django.utils.module_loading import import_string

from apps.chat.layers import LeanInMemoryChannelLayer
from fusionroom.settings import redis_channel_layer


async def test_a_group_send_reaches_every_member_with_a_copy_of_its_own() -> None:
    layer = LeanInMemoryChannelLayer()
    await layer.group_add("conversation.1", "a.inmemory!one")
    await layer.group_add("conversation.1", "a.inmemory!two")
    message = {"type": "chat.frames", "texts": ["x", "y"]}
    await layer.group_send("conversation.1", message)

    first = await layer.receive("a.inmemory!one")
    second = await layer.receive("a.inmemory!two")
    assert first == second == message
    first["texts"].append("changed")
    assert second["texts"] == ["x", "y"] and message["texts"] == ["x", "y"]


async def test_a_full_member_misses_the_message_and_the_others_still_get_it() -> None:
    layer = LeanInMemoryChannelLayer(capacity=1)
    await layer.group_add("conversation.1", "a.inmemory!stuck")
    await layer.group_add("conversation.1", "a.inmemory!live")
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "1"})
    assert (await layer.receive("a.inmemory!live"))["text"] == "1"
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "2"})

    assert (await layer.receive("a.inmemory!live"))["text"] == "2"
    assert (await layer.receive("a.inmemory!stuck"))["text"] == "1"
    with pytest.raises(ChannelFull):
        await layer.send("a.inmemory!full", {"type": "x"})
        await layer.send("a.inmemory!full", {"type": "x"})


async def test_messages_past_their_expiry_are_dropped_at_the_next_cleaning() -> None:
    layer = LeanInMemoryChannelLayer(expiry=0)
    layer._clean_expired()  # the first cleaning
    await layer.send("a.inmemory!late", {"type": "chat.frame", "text": "old"})
    layer._clean_expired()  # cleaned less than a second ago: nothing happens yet
    assert "a.inmemory!late" in layer.channels
    layer._cleaned_at -= 2  # as it would be two seconds later
    layer._clean_expired()
    assert "a.inmemory!late" not in layer.channels


def redis_connection_for(url: str) -> tuple[Any, Any]:
    """The channels-redis layer settings build for ``url``, and a connection of its pool (none is opened)."""
    config = redis_channel_layer(url)
    layer = import_string(config["BACKEND"])(**config["CONFIG"])
    return layer, layer.create_pool(0).make_connection()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://redis.example:6380/1", "unix:///run/r.sock"]
)
def test_redis_layer_reads_outlast_its_blocking_wait_and_dead_servers_still_fail(url: str) -> None:
    # channels-redis waits for messages in a blocking read of brpop_timeout seconds: a socket timeout not
    # well above it turns every quiet moment into an error (redis-py 8 made 5 s the default, the same as the
    # block). An upgrade of either library that changes one side fails here.
    layer, connection = redis_connection_for(url)
    assert connection.socket_timeout >= layer.brpop_timeout + 5
    assert connection.socket_timeout <= 60, "a dead connection must still be noticed"
    assert connection.socket_connect_timeout is not None and connection.socket_connect_timeout <= 10
    if not url.startswith("unix:"):
        assert connection.socket_keepalive
