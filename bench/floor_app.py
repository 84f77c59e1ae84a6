"""The smallest WebSocket app Daphne can serve for the relay floor (``bench.floor``): no Django, no Channels.

Each connection waits for one message ``{"frames": n}``, then sends ``n`` text frames in each of three
interleaved streams paced at ``RATE`` frames/s (the shape of a 3-seat run's deltas), and closes. What Daphne
spends per frame here is the least any app behind it can spend.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

RATE = 20.0
STREAMS = 3

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _stream(send: Send, seat: int, frames: int) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(frames):
        await asyncio.sleep(max(0.0, started + index / RATE - loop.time()))
        stamp = f"\u27e6{time.time():.6f}\u27e7"
        text = f'{{"type":"delta","seat":{seat},"offset":{index},"text":"word{index} {stamp}"}}'
        await send({"type": "websocket.send", "text": text})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        return
    if scope["type"] == "http":
        await receive()
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    message = await receive()
    if message["type"] != "websocket.receive":
        return
    frames = int(json.loads(message.get("text") or "{}").get("frames", 0))
    await asyncio.gather(*(_stream(send, seat, frames) for seat in range(1, STREAMS + 1)))
    await send({"type": "websocket.close", "code": 1000})
