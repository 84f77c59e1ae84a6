"""The relay floor: what one token costs in the two parts of the path that no code of ours can remove.

``python -m bench --only floor``. The load section's 200 runs at one token per chunk ask one Daphne process to
take 12,000 chunks/s off 600 upstream streams and send 12,000 WebSocket frames/s to 200 browsers. One Python
process runs on one core at a time, so whatever the application does, the process needs at least

    (CPU to receive and parse one upstream chunk + CPU to send one WebSocket frame) x 12,000 per second.

This section measures both parts with nothing of the chatroom around them, at the load's concurrency:

- **inbound**: 600 concurrent streams from the loopback upstream (another process) read in this process, once
  with bare asyncio sockets (no HTTP parsing at all: the event loop's own cost per read), once through the
  provider client (``OpenAICompatClient``: httpx, SSE, the pydantic chunk models), which is what a run uses.
  The provider client's two speed measures (``apps/providers/http.py``: the asyncio network backend of
  ``netstream.py`` and the 16 pools) are each also measured off, in the same rounds, interleaved: CPU per
  chunk, and CPU per stream opened and closed (streams of one token, where the pools' per-request cost shows);
- **outbound**: Daphne serving ``bench.floor_app`` (no Django, no Channels), 200 sockets each receiving three
  interleaved paced streams of frames; Daphne's CPU per frame.

Each is run with short and long streams, and the per-chunk figure is the difference between the two divided
by the difference in chunks, so connection set-up and process start-up drop out. The result is a lower
bound on the CPU per relayed token and hence an upper bound on the chunks/s one process can relay.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.load import ROOT, _cpu_seconds, _free_port, _wait_http

STREAMS = 600
SOCKETS = 200
SHORT, LONG = 60, 240
# Rounds of the provider client's variants, interleaved (the order reversed every other round).
ROUNDS = 2
# The provider client as shipped, and with each speed measure off: (pools, None for the transport's own
# number; True for httpcore's default network backend instead of ours).
VARIANTS: dict[str, tuple[int | None, bool]] = {
    "as shipped": (None, False),
    "httpcore's default network backend (anyio)": (None, True),
    "one httpcore pool instead of 16": (1, False),
}
TOKENS_PER_S = 20.0
DEMAND_CHUNKS_PER_S = 200 * 3 * TOKENS_PER_S


@dataclass(frozen=True)
class Sample:
    units: int
    cpu_s: float


def _marginal_us(short: Sample, long: Sample) -> float:
    return (long.cpu_s - short.cpu_s) / max(long.units - short.units, 1) * 1e6


# --- the upstream ----------------------------------------------------------------------------------------


def _serve_upstream(port: int) -> None:
    from tests.fakes.upstream import FakeUpstream, ModelScript

    def script(words: int) -> ModelScript:
        text = " ".join(f"word{i}" for i in range(words))
        return ModelScript(text=text, tokens_per_s=TOKENS_PER_S, chunk_words=1, comments=False)

    upstream = FakeUpstream(
        port=port,
        path_prefix="/v1",
        scripts={
            "short": script(SHORT),
            "long": script(LONG),
            "one": ModelScript(text="word0", chunk_words=1, comments=False),
        },
    )

    async def serve() -> None:
        await upstream.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- inbound ---------------------------------------------------------------------------------------------


class _Counter(asyncio.Protocol):
    """Counts tokens off the socket and nothing else: the event loop's cost per read, no parsing."""

    def __init__(self, request: bytes, done: asyncio.Future[None], counts: list[int]) -> None:
        self.request, self.done, self.counts = request, done, counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.counts[0] += data.count(b'"content": "word')
        if data.endswith(b"0\r\n\r\n") and not self.done.done():
            self.done.set_result(None)


async def _bare(port: int, model: str) -> Sample:
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    loop = asyncio.get_running_loop()
    counts = [0]
    started = time.process_time()
    waiters = []
    for _ in range(STREAMS):
        done: asyncio.Future[None] = loop.create_future()
        waiters.append(done)
        await loop.create_connection(functools.partial(_Counter, request, done, counts), "127.0.0.1", port)
    await asyncio.gather(*waiters)
    return Sample(counts[0], time.process_time() - started)


async def _client(port: int, model: str, variant: tuple[int | None, bool]) -> Sample:
    import httpcore

    from apps.providers.base import ChatMessage, CompletionRequest, TextDelta
    from apps.providers.http import POOL_SHARDS, PoolTransport, provider_client, tls_context_ready
    from apps.providers.openai_compat import OpenAICompatClient

    pools, anyio = variant
    transport = PoolTransport(
        ssl_context=await tls_context_ready(),
        pools=POOL_SHARDS if pools is None else pools,
        network_backend=httpcore.AnyIOBackend() if anyio else None,
    )
    http = provider_client(transport)
    client = OpenAICompatClient(
        base_url=f"http://127.0.0.1:{port}/v1", provider="bench", max_retries=0, http_client=http
    )
    request = CompletionRequest(model=model, messages=[ChatMessage(role="user", content="hi")])
    counts = [0]

    async def one() -> None:
        async for chunk in client.stream(request):
            if isinstance(chunk, TextDelta):
                counts[0] += 1

    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(STREAMS)))
    cpu = time.process_time() - started
    await http.aclose()
    return Sample(counts[0], cpu)


@dataclass
class _Variant:
    short: Sample = Sample(0, 0.0)
    long: Sample = Sample(0, 0.0)
    one: Sample = Sample(0, 0.0)

    def add(self, model: str, sample: Sample) -> None:
        old: Sample = getattr(self, model)
        setattr(self, model, Sample(old.units + sample.units, old.cpu_s + sample.cpu_s))

    @property
    def chunk_us(self) -> float:
        return _marginal_us(self.short, self.long)

    @property
    def stream_ms(self) -> float:
        """CPU to open, read and close a one-token stream: the request's own cost, at ``STREAMS`` open."""
        return self.one.cpu_s / max(self.one.units, 1) * 1e3


def _client_variants(port: int) -> dict[str, _Variant]:
    results = {name: _Variant() for name in VARIANTS}
    names = list(VARIANTS)
    for round_ in range(ROUNDS):
        for name in names if round_ % 2 == 0 else names[::-1]:
            for model in ("short", "long", "one"):
                results[name].add(model, asyncio.run(_client(port, model, VARIANTS[name])))
    return results


# --- outbound --------------------------------------------------------------------------------------------


async def _receive_all(url: str, frames: int, counts: list[int]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=2**20, open_timeout=60) as ws:
        await ws.send(json.dumps({"frames": frames}))
        async for _ in ws:
            counts[0] += 1


def _outbound(frames: int) -> Sample:
    port = _free_port()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.floor_app:app"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/", daphne)
        before = _cpu_seconds(daphne.pid)
        counts = [0]

        async def drive() -> None:
            url = f"ws://127.0.0.1:{port}/"
            await asyncio.gather(*(_receive_all(url, frames, counts) for _ in range(SOCKETS)))

        asyncio.run(drive())
        return Sample(counts[0], _cpu_seconds(daphne.pid) - before)
    finally:
        daphne.terminate()
        daphne.wait(timeout=15)


# --- the report ------------------------------------------------------------------------------------------


def run() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", "--upstream", str(port)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert upstream.stdout is not None
        if upstream.stdout.readline().strip() != b"ready":
            raise RuntimeError("the loopback upstream did not start")
        bare = [asyncio.run(_bare(port, model)) for model in ("short", "long")]
        variants = _client_variants(port)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    outbound = [_outbound(SHORT), _outbound(LONG)]

    shipped = variants["as shipped"]
    bare_us, client_us, out_us = _marginal_us(*bare), shipped.chunk_us, _marginal_us(*outbound)
    print(
        f"inbound, {STREAMS} concurrent upstream streams, 1 token per chunk: "
        f"bare asyncio socket read {bare_us:.0f} us per chunk; "
        f"provider client (httpx + SSE + pydantic) {client_us:.0f} us per chunk, "
        f"{shipped.stream_ms:.2f} ms per stream opened and closed"
    )
    for name, variant in variants.items():
        if variant is not shipped:
            print(
                f"  with {name}: {variant.chunk_us:.0f} us per chunk "
                f"(x{variant.chunk_us / shipped.chunk_us:.2f} of shipped), "
                f"{variant.stream_ms:.2f} ms per stream (x{variant.stream_ms / shipped.stream_ms:.2f})"
            )
    print(
        f"outbound, {SOCKETS} WebSockets x 3 streams: "
        f"Daphne alone (no Django, no Channels) {out_us:.0f} us per frame"
    )
    floor = client_us + out_us
    print(
        f"relay floor: {floor:.0f} us of CPU per token, so one process relays at most "
        f"{1e6 / floor:,.0f} chunks/s with nothing else to do; 200 runs demand {DEMAND_CHUNKS_PER_S:,.0f} "
        f"chunks/s, {DEMAND_CHUNKS_PER_S * floor / 1e6:.2f} core-seconds per second"
    )
    print(f"  ({os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--upstream":
        _serve_upstream(int(sys.argv[2]))
    else:
        run()
