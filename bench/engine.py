"""How much the engine adds to a run's critical path, and how much memory a run takes.

Against the loopback upstream (``tests.fakes.upstream``), whose models have known, different latencies and
token rates, the engine runs a 3-seat and an 8-seat panel through the real OpenAI-compatible client. Then
every request of that run is sent again alone, against the same server in the same process: the critical
path is the slowest seat alone + the judge alone + the writer alone. The ratio wall / critical says what
orchestration costs (target <= 1.05). Peak memory is measured on a separate run (tracing slows Python
down, so it is kept out of the timed runs) with tracemalloc, plus the process's ru_maxrss.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
import tracemalloc
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import FusionRequest, RunDone, SeatSpec
from apps.providers.base import CompletionRequest, ModelClient, StreamChunk, Usage
from apps.providers.http import shared_client_close
from apps.providers.registry import Gateway, GatewayConfig
from tests.fakes.upstream import FakeUpstream, ModelScript

TARGET_RATIO = 1.05
# The machine may be shared: the verdict is on the median round; the worst one is shown too.
ROUNDS = 3
PANEL_SIZES = (3, 8)
PROMPT = "Which is better for a small team, PostgreSQL or MySQL? Give your reasons."


@dataclass(frozen=True)
class BenchModel:
    id: str
    latency_s: float
    tokens_per_s: float
    # Words of the answer; None: the upstream's own reply (an analysis, for the judge).
    words: int | None

    def script(self) -> ModelScript:
        text = None
        if self.words is not None:
            words = [f"{self.id.split('/')[1]}{index}" for index in range(self.words)]
            text = "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
        return ModelScript(text=text, latency_s=self.latency_s, tokens_per_s=self.tokens_per_s, cost=0.0)


# Seconds to first token, tokens per second, words. "slow" is the slowest seat of both panels.
PANEL = [
    BenchModel("bench/swift", 0.10, 150, 70),
    BenchModel("bench/steady", 0.25, 100, 80),
    BenchModel("bench/slow", 0.40, 80, 100),
    BenchModel("bench/brisk", 0.15, 120, 90),
    BenchModel("bench/calm", 0.30, 100, 80),
    BenchModel("bench/deep", 0.35, 90, 90),
    BenchModel("bench/quick", 0.05, 200, 80),
    BenchModel("bench/even", 0.20, 110, 90),
]
JUDGE = BenchModel("bench/judge", 0.30, 300, None)
WRITER = BenchModel("bench/writer", 0.20, 150, 150)


class _RecordingClient:
    """Passes calls through, keeping every request so it can be replayed alone."""

    is_demo = False

    def __init__(self, inner: ModelClient, requests: list[CompletionRequest]) -> None:
        self.inner = inner
        self.requests = requests

    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        self.requests.append(request)
        return self.inner.stream(request)

    def supports_structured_output(self, model: str) -> bool:
        return self.inner.supports_structured_output(model)


class _RecordingGateway:
    def __init__(self, inner: Gateway) -> None:
        self.inner = inner
        self.requests: list[CompletionRequest] = []

    def client_for(self, model: str) -> ModelClient:
        return _RecordingClient(self.inner.client_for(model), self.requests)

    def cost_of(self, model: str, usage: Usage) -> float | None:
        return self.inner.cost_of(model, usage)

    def is_demo(self, model: str) -> bool:
        return self.inner.is_demo(model)

    def supports_tools(self, model: str) -> bool:
        return self.inner.supports_tools(model)


@dataclass
class Round:
    seats: int
    wall_s: float
    seat_alone_s: float
    judge_alone_s: float
    writer_alone_s: float
    events: int

    @property
    def critical_s(self) -> float:
        return self.seat_alone_s + self.judge_alone_s + self.writer_alone_s

    @property
    def ratio(self) -> float:
        return self.wall_s / self.critical_s


def _request(panel: list[BenchModel]) -> FusionRequest:
    return FusionRequest(
        prompt=PROMPT,
        seats=[SeatSpec(seat=index, model=model.id) for index, model in enumerate(panel, start=1)],
        judge=JUDGE.id,
        writer=WRITER.id,
    )


async def _run(gateway: _RecordingGateway, request: FusionRequest) -> tuple[float, int]:
    started = time.perf_counter()
    events = [event async for event in run_fusion(request, gateway=gateway)]
    wall = time.perf_counter() - started
    if not isinstance(events[-1], RunDone):
        raise RuntimeError(f"the benchmark run did not finish: {events[-1]!r}")
    return wall, len(events)


async def _alone(client: ModelClient, request: CompletionRequest) -> float:
    started = time.perf_counter()
    chunks = [chunk async for chunk in client.stream(request)]
    if not chunks:
        raise RuntimeError(f"{request.model} sent nothing")
    return time.perf_counter() - started


async def _round(gateway: Gateway, panel: list[BenchModel]) -> Round:
    recording = _RecordingGateway(gateway)
    wall, events = await _run(recording, _request(panel))
    seat_ids = {model.id for model in panel}
    seats = [r for r in recording.requests if r.model in seat_ids]
    (judge,) = [r for r in recording.requests if r.model == JUDGE.id]
    (writer,) = [r for r in recording.requests if r.model == WRITER.id]
    seat_times = [await _alone(gateway.client_for(r.model), r) for r in seats]
    return Round(
        seats=len(panel),
        wall_s=wall,
        seat_alone_s=max(seat_times),
        judge_alone_s=await _alone(gateway.client_for(JUDGE.id), judge),
        writer_alone_s=await _alone(gateway.client_for(WRITER.id), writer),
        events=events,
    )


async def _peak_traced(gateway: Gateway, panel: list[BenchModel]) -> int:
    tracemalloc.start()
    try:
        await _run(_RecordingGateway(gateway), _request(panel))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _bench() -> tuple[list[Round], dict[int, int]]:
    async with FakeUpstream() as upstream:
        for model in [*PANEL, JUDGE, WRITER]:
            upstream.script(model.id, model.script())
        config = GatewayConfig(
            openrouter_base_url=upstream.base_url, openrouter_api_key="bench", max_retries=0
        )
        gateway = Gateway(config)
        try:
            # Warm-up: imports, the catalog, pooled connections.
            await _run(_RecordingGateway(gateway), _request(PANEL))
            rounds = [await _round(gateway, PANEL[:size]) for size in PANEL_SIZES for _ in range(ROUNDS)]
            peaks = {size: await _peak_traced(gateway, PANEL[:size]) for size in PANEL_SIZES}
        finally:
            await shared_client_close()
    return rounds, peaks


def run() -> None:
    rounds, peaks = asyncio.run(_bench())
    print("Engine against the loopback upstream (critical path = slowest seat + judge + writer, each alone)")
    print("seats  wall s  critical s  seat/judge/writer alone s   ratio  events")
    for r in rounds:
        alone = f"{r.seat_alone_s:.3f}/{r.judge_alone_s:.3f}/{r.writer_alone_s:.3f}"
        figures = f"{r.wall_s:>6.3f}  {r.critical_s:>10.3f}  {alone:>25}  {r.ratio:>6.3f}"
        print(f"{r.seats:>5}  {figures}  {r.events:>6}")
    for size in PANEL_SIZES:
        ratios = [r.ratio for r in rounds if r.seats == size]
        median = statistics.median(ratios)
        verdict = "met" if median <= TARGET_RATIO else "NOT met"
        print(
            f"{size}-seat panel: median ratio {median:.3f} over {len(ratios)} rounds, "
            f"worst {max(ratios):.3f} (target <= {TARGET_RATIO}: {verdict})"
        )
    for size, peak in peaks.items():
        print(f"{size}-seat panel: tracemalloc peak {peak / 2**20:.2f} MiB during one run")
    # Linux reports ru_maxrss in KiB.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Process peak RSS (ru_maxrss; the upstream and the client included): {rss:.1f} MiB")
