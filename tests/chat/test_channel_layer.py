from __future__ import annotations

import pytest
from channels.exceptions import ChannelFull

from apps.chat.layers import LeanInMemoryChannelLayer


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
