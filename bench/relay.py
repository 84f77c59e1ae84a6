"""What a relayed frame costs from the recorder's ``group_send`` to the socket, by channel layer.

``python -m bench --only relay``. In one process, no network, no database. N conversations, each with one
socket and one idle recorder listener waiting on a channel of its own, as in a live run. Two parts, each
in rounds interleaved so that a busy machine weighs on every variant alike (medians are printed):

- the layer alone: a reader task per socket channel; ``chat.frame`` messages (what the recorder sends) go
  round the groups as fast as the readers take them. CPU time per message.
- the socket path: the chatroom's ``ConversationConsumer`` through its ASGI interface, its handlers reached
  by Channels' dispatch as under Daphne. For ``SECONDS`` a producer sends ``chat.frame`` messages round the
  groups at ``MESSAGES_PER_S`` per conversation (the load benchmark's 3 seats at 20 one-token chunks a
  second). CPU time per message (producer + layer + consumer) and the delay from the time a message was due
  to its first frame reaching the socket (p50, p99).

Variants: Channels' ``InMemoryChannelLayer`` (the measure off) and the project's ``InProcessChannelLayer``
(on). On the socket path one more row prices the consumer's other measure: relayed frames skip Channels'
per-message database-connection check (``ConversationConsumer.dispatch``); the row "db check" runs the same
consumer with Channels' own dispatch for every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

SIZES = (50, 200)
ROUNDS = 3
LAYER_MESSAGES = 10_000
SECONDS = 1.0
MESSAGES_PER_S = 60.0
DRAIN_TIMEOUT_S = 3.0
FRAME = json.dumps({"type": "delta", "turn": 1, "seat": 2, "offset": 1234, "text": " a few words of text"})
STOCK = "Channels' InMemoryChannelLayer"
OURS = "InProcessChannelLayer"
CHECKED = "InProcessChannelLayer, db check per frame"


def _layers() -> dict[str, Callable[[], Any]]:
    from channels.layers import InMemoryChannelLayer

    from apps.chat.layers import InProcessChannelLayer

    return {
        STOCK: lambda: InMemoryChannelLayer(capacity=1500),
        OURS: lambda: InProcessChannelLayer(capacity=1500),
    }


# --- the layer alone -----------------------------------------------------------------------------------


async def _layer_alone(size: int, make_layer: Callable[[], Any]) -> float:
    """CPU seconds per message sent to a group and taken by its member."""
    layer = make_layer()
    readers_left = LAYER_MESSAGES
    finished = asyncio.Event()

    async def read(channel: str) -> None:
        nonlocal readers_left
        while True:
            await layer.receive(channel)
            readers_left -= 1
            if readers_left == 0:
                finished.set()

    channels = [await layer.new_channel() for _ in range(size)]
    for index, channel in enumerate(channels):
        await layer.group_add(f"conversation.{index}", channel)
    tasks = [asyncio.create_task(read(channel)) for channel in channels]
    tasks += [asyncio.create_task(layer.receive(await layer.new_channel())) for _ in range(size)]
    await asyncio.sleep(0)
    started = time.process_time()
    message = {"type": "chat.frame", "text": FRAME}
    for sent in range(LAYER_MESSAGES):
        await layer.group_send(f"conversation.{sent % size}", message)
        if sent % size == size - 1:
            await asyncio.sleep(0)  # the readers take this round's messages
    await finished.wait()
    cpu = (time.process_time() - started) / LAYER_MESSAGES
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return cpu


# --- the socket path -----------------------------------------------------------------------------------


class _Socket:
    """The ASGI side of one WebSocket: it connects, then notes when each stamped frame reaches it."""

    def __init__(self, delays: list[float], drained: asyncio.Event, total: int) -> None:
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbound.put_nowait({"type": "websocket.connect"})
        self.accepted = asyncio.Event()
        self.delays = delays
        self.drained = drained
        self.total = total

    async def receive(self) -> dict[str, Any]:
        return await self.inbound.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            text = message["text"]
            if not text.startswith("{"):  # the stamp the producer sent
                self.delays.append(time.perf_counter() - float(text))
                if len(self.delays) == self.total:
                    self.drained.set()
        elif message["type"] == "websocket.accept":
            self.accepted.set()


def _consumer(check_db: bool) -> Any:
    from channels.consumer import AsyncConsumer

    from apps.chat.consumers import ConversationConsumer
    from apps.chat.recorder import conversation_group

    class BenchConsumer(ConversationConsumer):
        async def connect(self) -> None:
            # The real connect asks the database who may watch; the relay after it is what is measured.
            self.group = conversation_group(self.scope["url_route"]["kwargs"]["conversation_id"])
            await self.channel_layer.group_add(self.group, self.channel_name)
            await self.accept()

    if not check_db:
        return BenchConsumer

    class CheckedConsumer(BenchConsumer):
        async def dispatch(self, message: dict[str, Any]) -> None:
            # Channels' own dispatch for every message, relayed frames included: the measure off.
            await AsyncConsumer.dispatch(self, message)

    return CheckedConsumer


async def _socket_path(
    size: int, make_layer: Callable[[], Any], *, check_db: bool
) -> tuple[float, list[float], int]:
    """CPU seconds per relayed message, the delays, and how many messages were sent."""
    from channels.layers import channel_layers

    from apps.chat.recorder import conversation_group

    layer = make_layer()
    channel_layers.set("default", layer)
    rate = size * MESSAGES_PER_S
    total = int(rate * SECONDS)
    delays: list[float] = []
    drained = asyncio.Event()
    app = _consumer(check_db).as_asgi()
    sockets = [_Socket(delays, drained, total) for _ in range(size)]
    tasks = [
        asyncio.create_task(
            app(
                {"type": "websocket", "path": "/", "url_route": {"kwargs": {"conversation_id": index}}},
                socket.receive,
                socket.send,
            )
        )
        for index, socket in enumerate(sockets)
    ]
    listeners = [asyncio.create_task(layer.receive(await layer.new_channel())) for _ in range(size)]
    await asyncio.gather(*(socket.accepted.wait() for socket in sockets))
    groups = [conversation_group(index) for index in range(size)]
    sent = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate))
        while sent < due:
            stamp = f"{started + sent / rate:.9f}"  # when it was due: a producer held up is late too
            await layer.group_send(groups[sent % size], {"type": "chat.frame", "text": stamp})
            sent += 1
        await asyncio.sleep(0.001)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drained.wait(), DRAIN_TIMEOUT_S)
    cpu = (time.process_time() - cpu_started) / max(len(delays), 1)
    for socket in sockets:
        socket.inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*tasks)
    for listener in listeners:
        listener.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    return cpu, delays, total


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def run(sizes: tuple[int, ...] = SIZES) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    import django

    django.setup()
    variants = _layers()
    print(
        f"layer alone: {LAYER_MESSAGES:,} messages per run; socket path: {SECONDS:.1f} s per run at "
        f"{MESSAGES_PER_S:.0f} messages/s per conversation, CPU of the whole process; "
        f"{ROUNDS} rounds interleaved, medians"
    )
    for size in sizes:
        alone: dict[str, list[float]] = {name: [] for name in variants}
        path = {**variants, CHECKED: variants[OURS]}
        cpu: dict[str, list[float]] = {name: [] for name in path}
        delays: dict[str, list[float]] = {name: [] for name in path}
        late: dict[str, int] = dict.fromkeys(path, 0)
        for _ in range(ROUNDS):
            for name, make_layer in variants.items():
                alone[name].append(asyncio.run(_layer_alone(size, make_layer)))
            for name, make_layer in path.items():
                per_message, run_delays, sent = asyncio.run(
                    # Channels' layer with Channels' dispatch: every measure off.
                    _socket_path(size, make_layer, check_db=name in (STOCK, CHECKED))
                )
                cpu[name].append(per_message)
                delays[name].extend(run_delays)
                late[name] += sent - len(run_delays)
        print(f"  {size} conversations, the layer alone:")
        base = statistics.median(alone[STOCK])
        for name in variants:
            median = statistics.median(alone[name])
            print(f"    {name:<36} {median * 1e6:6.1f} us CPU per message ({median / base:.2f}x Channels')")
        print(f"  {size} conversations, the socket path ({size * MESSAGES_PER_S:,.0f} messages/s demanded):")
        base = statistics.median(cpu[STOCK])
        for name in path:
            median = statistics.median(cpu[name])
            missing = f", {late[name]} not relayed within {DRAIN_TIMEOUT_S:.0f} s" if late[name] else ""
            p50, p99 = (_pct(delays[name], p) * 1e3 for p in (0.5, 0.99))
            print(
                f"    {name:<36} {median * 1e6:6.1f} us CPU per message ({median / base:.2f}x Channels'); "
                f"delay p50 {p50:.1f} ms, p99 {p99:.1f} ms{missing}"
            )


if __name__ == "__main__":
    run()
