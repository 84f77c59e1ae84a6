"""The channel layer of a single process (no ``REDIS_URL``), made for the chatroom's stream of small frames.

It implements Channels' documented channel layer interface ("Channel Layer Specification": ``send``,
``receive``, ``new_channel``, the ``groups`` and ``flush`` extensions, per-channel capacity and
``ChannelFull``, message expiry, group expiry) on ``BaseChannelLayer`` alone, the base class Channels
provides for that. Channels' own ``InMemoryChannelLayer`` scans every channel and every group for expired
entries on each send, group send and receive, so each frame costs time in proportion to the sockets open
in the process, and starts one task per group member. Here a frame costs the same whatever the number of
sockets: expiry is checked where a message or a membership is used, a sweep of the whole layer (dead
channels, idle groups) runs at most every ``SWEEP_INTERVAL_S``, and a group send puts a copy of the message
on each member's queue directly. ``python -m bench --only relay`` measures it against Channels' layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import time
from collections import deque
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

SWEEP_INTERVAL_S = 1.0


class _Inbox:
    """One channel's unread messages, oldest first, each with the monotonic time it expires, and the
    receivers waiting for the next one."""

    __slots__ = ("capacity", "messages", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.messages: deque[tuple[float, dict[str, Any]]] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class InProcessChannelLayer(BaseChannelLayer):
    """Channels' channel layer interface within one process; see the module docstring.

    Configured like Channels' in-memory layer: ``expiry`` (seconds a message waits unread before it is
    dropped), ``group_expiry`` (seconds a membership lasts after its ``group_add``), ``capacity`` (messages a
    channel holds before ``send`` raises ``ChannelFull`` and ``group_send`` skips it) and
    ``channel_capacity`` (capacities by channel name pattern).
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.group_expiry = group_expiry
        self._inboxes: dict[str, _Inbox] = {}
        # group -> member channel -> monotonic time of its latest group_add
        self._members: dict[str, dict[str, float]] = {}
        self._swept_at = time.monotonic()

    # --- channels ----------------------------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}inmemory!{''.join(random.choices(string.ascii_letters, k=12))}"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        now = time.monotonic()
        self._sweep_if_due(now)
        if not self._put(channel, deepcopy(message), now):
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._sweep_if_due(time.monotonic())
        while True:
            # Looked up on every pass: an inbox nobody waits on may be swept away while this one sleeps.
            inbox = self._inbox(channel)
            while inbox.messages:
                expires, message = inbox.messages.popleft()
                if expires > time.monotonic():
                    return message
            waiter = asyncio.get_running_loop().create_future()
            inbox.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        inbox.waiters.remove(waiter)
                elif inbox.messages:
                    inbox.wake_one()  # woken, then cancelled: the message goes to another receiver
                raise

    # --- groups ------------------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._members.setdefault(group, {})[channel] = time.monotonic()

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        members = self._members.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._members[group]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        now = time.monotonic()
        self._sweep_if_due(now)
        members = self._members.get(group)
        if not members:
            return
        joined_after = now - self.group_expiry
        for channel, joined in list(members.items()):
            if joined < joined_after:
                members.pop(channel, None)
            else:
                # A full channel belongs to a stuck reader: it misses this message (a client resyncs by
                # offset), the others don't. The specification forbids ChannelFull from a group send.
                self._put(channel, deepcopy(message), now)

    # --- flush extension ---------------------------------------------------------------------------------

    async def flush(self) -> None:
        self._members.clear()
        for channel, inbox in list(self._inboxes.items()):
            inbox.messages.clear()
            if not inbox.waiters:
                del self._inboxes[channel]

    async def close(self) -> None:
        pass  # nothing outside this process to let go of

    # --- inside ------------------------------------------------------------------------------------------

    def _inbox(self, channel: str) -> _Inbox:
        inbox = self._inboxes.get(channel)
        if inbox is None:
            inbox = self._inboxes[channel] = _Inbox(self.get_capacity(channel))
        return inbox

    def _put(self, channel: str, message: dict[str, Any], now: float) -> bool:
        inbox = self._inbox(channel)
        if len(inbox.messages) >= inbox.capacity:
            self._expire(channel, inbox, now)
            if len(inbox.messages) >= inbox.capacity:
                return False
        inbox.messages.append((now + self.expiry, message))
        inbox.wake_one()
        return True

    def _expire(self, channel: str, inbox: _Inbox, now: float) -> None:
        """Drop the messages of ``channel`` that waited past their expiry. A channel with one is left by
        nobody's reading it (a reader that died without leaving its groups): it leaves its groups, as the
        specification allows, so group sends stop filling it."""
        expired = False
        while inbox.messages and inbox.messages[0][0] <= now:
            inbox.messages.popleft()
            expired = True
        if expired:
            for group, members in list(self._members.items()):
                if members.pop(channel, None) is not None and not members:
                    del self._members[group]

    def _sweep_if_due(self, now: float) -> None:
        if now - self._swept_at < SWEEP_INTERVAL_S:
            return
        self._swept_at = now
        for channel, inbox in list(self._inboxes.items()):
            self._expire(channel, inbox, now)
            if not inbox.messages and not inbox.waiters:
                del self._inboxes[channel]
        joined_after = now - self.group_expiry
        for group, members in list(self._members.items()):
            for channel, joined in list(members.items()):
                if joined < joined_after:
                    del members[channel]
            if not members:
                del self._members[group]
