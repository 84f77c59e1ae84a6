"""A live run's own channel: where a consumer, in whichever process, asks the run for a snapshot or a cancel.

The recorder opens a channel, saves its name in ``Turn.recorder_channel`` and listens there for

- ``{"type": "run.snapshot", "reply_channel", "turn"}``: the recorder answers on ``reply_channel`` with
  ``{"type": "chat.snapshot", "turn", "text"}``, in order with the deltas that follow it;
- ``{"type": "run.cancel", "turn"}``: stop the run, keeping what streamed;
- ``{"type": "run.stop"}``: sent by the recorder itself when the run has ended, so the listener ends at
  once (a blocked Redis receive would only notice a task cancel when its BRPOP times out, seconds later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)


async def listen(
    layer: BaseChannelLayer,
    channel: str,
    *,
    snapshot: Callable[[str], Awaitable[None]],
    cancel: Callable[[], None],
) -> None:
    """Answer requests on ``channel`` until ``run.stop``."""
    while True:
        message = await layer.receive(channel)
        kind = message.get("type")
        if kind == "run.snapshot":
            reply = message.get("reply_channel")
            if isinstance(reply, str) and reply:
                await snapshot(reply)
        elif kind == "run.cancel":
            cancel()
        elif kind == "run.stop":
            return


async def listener_stop(layer: BaseChannelLayer, channel: str, task: asyncio.Task[None]) -> None:
    """End the listener of ``channel`` promptly: by message first, by cancelling it if that fails."""
    try:
        await layer.send(channel, {"type": "run.stop"})
        await asyncio.wait([task], timeout=1.0)
    except Exception:  # the cancel below still ends it
        logger.debug("could not stop the listener on %s by message", channel, exc_info=True)
    task.cancel()
    if not task.done():
        await asyncio.wait([task], timeout=0.1)
