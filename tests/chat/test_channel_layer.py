"""The channel layers: the one-process layer's contract (Channels' channel layer interface, as the chatroom
relies on it) and the channels-redis layer settings build."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from channels.exceptions import ChannelFull
from django.utils.module_loading import import_string

from apps.chat import layers
from apps.chat.layers import InProcessChannelLayer
from fusionroom.settings import redis_channel_layer

# Expiry tests wait this much longer than the expiry they set.
PAST = 0.08


async def nothing_arrives(layer: InProcessChannelLayer, channel: str) -> bool:
    """Whether ``channel`` has nothing waiting: a probe sent now is the next message it gives."""
    await layer.send(channel, {"type": "probe"})
    return await layer.receive(channel) == {"type": "probe"}


async def test_a_group_send_reaches_every_member_with_a_copy_of_its_own() -> None:
    layer = InProcessChannelLayer()
    await layer.group_add("conversation.1", "a.inmemory!one")
    await layer.group_add("conversation.1", "a.inmemory!two")
    message = {"type": "chat.frames", "texts": ["x", "y"]}
    await layer.group_send("conversation.1", message)

    first = await layer.receive("a.inmemory!one")
    second = await layer.receive("a.inmemory!two")
    assert first == second == message
    first["texts"].append("changed")
    assert second["texts"] == ["x", "y"] and message["texts"] == ["x", "y"]


async def test_a_sent_message_is_a_copy_the_sender_may_go_on_changing() -> None:
    layer = InProcessChannelLayer()
    message: dict[str, Any] = {"type": "run.snapshot", "nested": {"turn": 1}}
    await layer.send("a.inmemory!one", message)
    message["nested"]["turn"] = 2
    assert await layer.receive("a.inmemory!one") == {"type": "run.snapshot", "nested": {"turn": 1}}


async def test_messages_come_out_of_a_channel_in_the_order_they_went_in() -> None:
    layer = InProcessChannelLayer()
    for number in range(5):
        await layer.send("a.inmemory!one", {"type": "chat.frame", "text": str(number)})
    assert [(await layer.receive("a.inmemory!one"))["text"] for _ in range(5)] == ["0", "1", "2", "3", "4"]


async def test_a_waiting_receiver_gets_the_message_sent_after_it_started_waiting() -> None:
    layer = InProcessChannelLayer()
    waiting = asyncio.create_task(layer.receive("a.inmemory!one"))
    await asyncio.sleep(0)
    assert not waiting.done()
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "hi"})
    assert await asyncio.wait_for(waiting, 1) == {"type": "chat.frame", "text": "hi"}


async def test_a_receiver_cancelled_as_its_message_arrives_leaves_it_to_the_next_receiver() -> None:
    layer = InProcessChannelLayer()
    first = asyncio.create_task(layer.receive("a.inmemory!one"))
    second = asyncio.create_task(layer.receive("a.inmemory!one"))
    await asyncio.sleep(0)
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "hi"})  # wakes the first
    first.cancel()
    assert await asyncio.wait_for(second, 1) == {"type": "chat.frame", "text": "hi"}
    assert first.cancelled()


async def test_a_full_channel_refuses_a_send_and_a_full_member_misses_a_group_send() -> None:
    layer = InProcessChannelLayer(capacity=1)
    await layer.group_add("conversation.1", "a.inmemory!stuck")
    await layer.group_add("conversation.1", "a.inmemory!live")
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "1"})
    assert (await layer.receive("a.inmemory!live"))["text"] == "1"
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "2"})  # no ChannelFull here

    assert (await layer.receive("a.inmemory!live"))["text"] == "2"
    assert (await layer.receive("a.inmemory!stuck"))["text"] == "1"
    assert await nothing_arrives(layer, "a.inmemory!stuck")  # "2" never went in
    await layer.send("a.inmemory!full", {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send("a.inmemory!full", {"type": "x"})


async def test_capacity_can_differ_by_channel_name() -> None:
    layer = InProcessChannelLayer(capacity=1, channel_capacity={"big.*": 3})
    for _ in range(3):
        await layer.send("big.inmemory!one", {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send("big.inmemory!one", {"type": "x"})
    await layer.send("small.inmemory!one", {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send("small.inmemory!one", {"type": "x"})


async def test_a_message_left_unread_past_its_expiry_is_dropped() -> None:
    layer = InProcessChannelLayer(expiry=0.05)
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "old"})
    await asyncio.sleep(PAST)
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "new"})
    assert (await layer.receive("a.inmemory!one"))["text"] == "new"


async def test_expired_messages_make_room_in_a_full_channel() -> None:
    layer = InProcessChannelLayer(expiry=0.05, capacity=1)
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "old"})
    await asyncio.sleep(PAST)
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "new"})
    assert (await layer.receive("a.inmemory!one"))["text"] == "new"


async def test_a_member_nobody_reads_leaves_its_groups_once_a_message_expires_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A socket whose consumer died without leaving its group: group sends must stop filling its channel.
    monkeypatch.setattr(layers, "SWEEP_INTERVAL_S", 0.0)
    layer = InProcessChannelLayer(expiry=0.05)
    await layer.group_add("conversation.1", "a.inmemory!dead")
    await layer.group_add("conversation.1", "a.inmemory!live")
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "1"})
    assert (await layer.receive("a.inmemory!live"))["text"] == "1"
    await asyncio.sleep(PAST)
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "2"})

    assert (await layer.receive("a.inmemory!live"))["text"] == "2"
    assert await nothing_arrives(layer, "a.inmemory!dead")


async def test_a_membership_lasts_group_expiry_after_its_latest_group_add() -> None:
    layer = InProcessChannelLayer(group_expiry=0.3)
    await layer.group_add("conversation.1", "a.inmemory!one")
    await asyncio.sleep(0.2)
    await layer.group_add("conversation.1", "a.inmemory!one")  # renewed
    await asyncio.sleep(0.2)
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "still in"})
    assert (await layer.receive("a.inmemory!one"))["text"] == "still in"

    await asyncio.sleep(0.3 + PAST)
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "gone"})
    assert await nothing_arrives(layer, "a.inmemory!one")


async def test_group_discard_stops_group_sends_reaching_the_channel() -> None:
    layer = InProcessChannelLayer()
    await layer.group_add("conversation.1", "a.inmemory!one")
    await layer.group_discard("conversation.1", "a.inmemory!one")
    await layer.group_discard("conversation.1", "a.inmemory!one")  # not a member: nothing happens
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "1"})
    assert await nothing_arrives(layer, "a.inmemory!one")


async def test_flush_empties_every_channel_and_group() -> None:
    layer = InProcessChannelLayer()
    await layer.group_add("conversation.1", "a.inmemory!one")
    await layer.send("a.inmemory!one", {"type": "chat.frame", "text": "before"})
    await layer.flush()
    await layer.group_send("conversation.1", {"type": "chat.frame", "text": "after"})
    assert await nothing_arrives(layer, "a.inmemory!one")


async def test_new_channels_are_valid_distinct_names() -> None:
    layer = InProcessChannelLayer()
    names = {await layer.new_channel() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert layer.require_valid_channel_name(name)
        assert name.startswith("specific.inmemory!")


async def test_names_and_messages_are_checked_as_channels_requires() -> None:
    layer = InProcessChannelLayer()
    with pytest.raises(TypeError):
        await layer.send("bad name", {"type": "x"})
    with pytest.raises(TypeError):
        await layer.group_add("bad group!", "a.inmemory!one")
    with pytest.raises(AssertionError):
        await layer.send("a.inmemory!one", ["not", "a", "dict"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://redis.example:6380/1", "unix:///run/r.sock"]
)
def test_redis_layer_streams_by_subscription_and_dead_servers_still_fail(url: str) -> None:
    # The list-based channels-redis layer takes a process's messages one blocking read at a time and drops
    # group sends once its shared inbound list is full: a busy process lost the ends of turns. An upgrade or a
    # settings change that swaps the layer back fails here.
    config = redis_channel_layer(url)
    assert config["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    (host,) = config["CONFIG"]["hosts"]
    assert host["address"] == url
    assert 5 <= host["socket_timeout"] <= 60, "a publish may wait a little, a dead connection must still fail"
    assert host["socket_connect_timeout"] <= 10
    if not url.startswith("unix:"):
        assert host["socket_keepalive"]
    layer = import_string(config["BACKEND"])(**config["CONFIG"])
    assert callable(layer.group_send) and callable(layer.receive)


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")
async def test_thousands_of_group_sends_at_once_reach_another_process_complete_and_in_order() -> None:
    # Two layer instances on one prefix, as two processes: one sends a burst far larger than channels-redis's
    # inbound capacity (which dropped the overflow of a busy process), the other receives every message, in
    # each group's order.
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    sender, receiver = (
        import_string(config["BACKEND"])(**config["CONFIG"])
        for config in (redis_channel_layer(os.environ["REDIS_URL"], prefix=prefix) for _ in range(2))
    )
    groups, per_group = 20, 200
    channels = [await receiver.new_channel() for _ in range(groups)]
    for index, channel in enumerate(channels):
        await receiver.group_add(f"conversation.{index}", channel)

    async def send_all(group: int) -> None:
        for n in range(per_group):
            await sender.group_send(f"conversation.{group}", {"type": "chat.frame", "n": n})

    try:
        await asyncio.gather(*(send_all(group) for group in range(groups)))
        async with asyncio.timeout(30):
            for channel in channels:
                received = [await receiver.receive(channel) for _ in range(per_group)]
                assert [message["n"] for message in received] == list(range(per_group))
    finally:
        await sender.flush()
        await receiver.flush()
