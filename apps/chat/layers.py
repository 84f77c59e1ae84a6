"""The in-process channel layer, made cheap per message for the chatroom's stream of small frames.

Channels' ``InMemoryChannelLayer`` scans every channel and every group for expired entries on each send,
group send and receive, builds a new ``asyncio.Queue`` on each call only to throw it away, deep-copies each
message and starts one task per group member. With a few hundred live conversations that is a scan of a few
hundred queues for every text delta. This subclass keeps its behaviour (capacity, ``ChannelFull``, expiry,
group expiry, a private copy of each message) but expires at most every ``CLEAN_INTERVAL_S``, copies flat
messages (the recorder's ``{"type", "text"}``) with a plain ``dict()`` and delivers a group send inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

CLEAN_INTERVAL_S = 1.0
_FLAT = (str, int, float, bool, type(None), bytes)


def _copy(message: dict[str, Any]) -> dict[str, Any]:
    """A copy the receiver may change freely: plain for flat values and lists of them (the recorder's
    batched ``chat.frames``), deep otherwise."""
    copy = dict(message)
    for key, value in copy.items():
        if isinstance(value, list) and all(isinstance(item, _FLAT) for item in value):
            copy[key] = list(value)
        elif not isinstance(value, _FLAT):
            return deepcopy(message)
    return copy


class LeanInMemoryChannelLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer`` with O(1) work per message; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < CLEAN_INTERVAL_S:
            return
        self._cleaned_at = now
        super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue[Any]:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, _copy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._put(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
        return message

    def receive_nowait(self, channel: str) -> dict[str, Any] | None:
        """The next message on ``channel`` if one is waiting, else None; never waits."""
        queue = self.channels.get(channel)
        if queue is None or queue.empty():
            return None
        _, message = queue.get_nowait()
        if queue.empty() and self.channels.get(channel) is queue:
            del self.channels[channel]
        return message

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # A full channel belongs to a stuck socket: it misses this message (and resyncs), others don't.
            with contextlib.suppress(ChannelFull):
                self._put(channel, message)
