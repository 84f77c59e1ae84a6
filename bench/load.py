"""Chatroom load: N conversations at once, each a 3-seat fusion, over real WebSockets against the server.

``python -m bench --only load`` (or ``python -m bench.load --sizes 50 200``). Two set-ups:

- ``sqlite``: one Daphne on a fresh SQLite database with the in-memory channel layer (``make run`` as is);
- ``postgres``: the supervisor (``python -m fusionroom.serve``) with 1 and then 2 Daphne workers on one port,
  on PostgreSQL (``DATABASE_URL``) and Redis (``REDIS_URL``), which must be set: as for ``make drill``, give
  it a database and a Redis database of its own (it migrates the database and adds its rows there). Without
  them it is skipped with a note. It runs 1 token per chunk and ends with the ratio of the two capacities.

For each size it starts

- the loopback upstream (``tests/fakes/upstream.py``) in a process of its own, configured as the endpoint
  ``bench`` (``FUSIONROOM_ENDPOINTS``): seats ``bench/a|b|c``, judge and writer, each answer streamed at a
  steady pace;
- the server: one Daphne process on a fresh SQLite database, or the supervisor and its workers (all of
  them have accepted a connection before the clients start);
- N WebSocket clients, one per conversation, which all send their prompt at once and read until the turn ends
  (the worst case: every run starts, and its seats finish, in the same few milliseconds). The ``sqlite``
  set-up also runs ``SPREAD_SIZE`` runs whose prompts arrive at random moments over ``SPREAD_S`` seconds, as
  people's do (``--spread`` sets that for every size).

The server runs as deployed: ``DEBUG`` off (no query log).

Printed: tokens relayed per second (text deltas reaching the clients), the delay from a token leaving the
upstream to reaching its client (p50/p99/max), errors (error frames, turns not done, broken sockets), the
peak memory (VmHWM) of the Daphne process (the largest worker's) and its CPU time while the clients ran (the
workers' sum, and each one's share; start-up is left out). The upstream stamps each chunk's send time
(``x_sent_at``); that field stops at the provider client, so this benchmark's upstream also writes the same
clock reading into the token text, where the client can read it back. The clients run on the same machine
(same clock). The CPU time of the upstream and of the clients (this process) is printed too: on a small
machine they share the cores with Daphne, and a saturated load generator would distort the figures. The
``postgres`` set-up adds the CPU time of the Redis and PostgreSQL servers, and the share of the cores that
every process of the run kept busy over its wall time (bursts are busier than that average).

Two workloads (the ``sqlite`` set-up runs both). The original: every chunk carries one token (20 chunks/s
per answer), the worst case for a relay, whose cost is per chunk. And a realistic one: OpenRouter's streams
usually carry several tokens per chunk (the upstream provider's own batching), so ``--tokens-per-chunk 4``
streams the same answers at the same token rate in a quarter of the chunks. Both print the chunks/s they
demand of Daphne.

The ``sqlite`` set-up ends its 1-token workload with a per-chunk split: the largest size again with answers
four times as long, so that the CPU a run costs whatever its length drops out and the CPU per relayed chunk
can be compared with the relay floor (``bench/floor.py``), which is measured the same way.

``--capacity`` adds a short bounded search (a few sizes, bisecting between sizes) for the largest number of
concurrent runs whose upstream->client p99 stays under ``P99_TARGET_MS`` with no error; each size it tries is
run ``CAPACITY_REPEATS`` times and judged by the mean of their p99s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionroom.serve import database_is_sqlite
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
SIZES = (50, 200)
SEATS = ("bench/a", "bench/b", "bench/c")
# Per answer: words (one word is one token) and pace; a chunk carries TOKENS_PER_CHUNK words unless told.
ANSWER_WORDS = 60
# The longer answers of the per-chunk split (see ``_per_chunk_split``), at the largest size.
LONG_ANSWER_WORDS = 240
TOKENS_PER_S = 20.0
TOKENS_PER_CHUNK = 1
P99_TARGET_MS = 50.0
CAPACITY_PROBES = 5
# Each size the capacity search tries is run this many times and judged by the mean of their p99s: one run's
# p99 hangs on how its bursts line up (12 runs on one worker: p99 39 ms once, 63 ms another time, both quiet).
CAPACITY_REPEATS = 2
SETUPS = ("sqlite", "postgres")
# Sockets the clients open at once. Pages open theirs in turn, not in the same millisecond; and handshakes in
# a burst favour whichever worker wakes first (it accepts every one waiting), while connections made one after
# another go to one worker or the other at random (10 sockets: from 3 + 7 to 7 + 3 here).
CONNECTS_AT_ONCE = 1
# Seconds over which the prompts are sent (``--spread``); 0: every prompt in the same millisecond.
ARRIVAL_SPREAD_S = 0.0
# The extra figure of the sqlite set-up: this many runs arriving over this many seconds.
SPREAD_SIZE = 50
SPREAD_S = 1.0
WORKERS = (1, 2)
# The postgres set-up's services, whose CPU comes from the same cores (process names as /proc shows them).
SERVICES = ("redis-server", "postgres")
RUN_TIMEOUT_S = 120.0
STAMP = re.compile(r"\u27e6(\d+\.\d+)\u27e7")
WORD = re.compile(r"word\d+")
PROMPT = "Compare three ways to cache a slow API, and say which one a small team should pick."


@dataclass
class Result:
    size: int
    wall_s: float = 0.0
    tokens: int = 0
    chunks: int = 0
    # WebSocket frames carrying text deltas (one may carry several columns' deltas).
    frames: int = 0
    delays_ms: list[float] = field(default_factory=list)
    # Tokens over the p99 target, by when they came: "start" (the run's first second), "panel" (a seat's
    # token after that), "fused" (the writer's): where the worst delays of a run are.
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("start", "panel", "fused"), 0))
    errors: list[str] = field(default_factory=list)
    done: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    worker_cpu_s: list[float] = field(default_factory=list)
    sockets: list[int] = field(default_factory=list)
    upstream_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    # Redis and PostgreSQL (the postgres set-up): None where they are not part of the run.
    services_cpu_s: float | None = None

    def p99(self) -> float:
        delays = sorted(self.delays_ms)
        return delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else float("inf")

    def worst(self) -> float:
        """The largest delay (ms)."""
        return max(self.delays_ms, default=float("nan"))

    def ok(self) -> bool:
        return not self.errors and self.done == self.size and self.p99() < P99_TARGET_MS

    def summary(self) -> str:
        delays = sorted(self.delays_ms)

        def pct(p: float) -> float:
            return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else float("nan")

        rate = self.tokens / self.wall_s if self.wall_s else 0.0
        worst = self.worst()
        return (
            f"{self.size:>4} concurrent runs: {self.done}/{self.size} done in {self.wall_s:.1f} s, "
            f"{self.tokens:,} tokens relayed ({rate:,.0f}/s) in {self.frames:,} frames; "
            "upstream->client delay "
            f"p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {worst:.1f} ms; "
            f"errors {len(self.errors)}; Daphne peak memory {self.peak_rss_mb:.0f} MiB, "
            f"CPU {self.cpu_s:.1f} s{self._split()} ({self.cpu_s / max(self.chunks, 1) * 1e6:.0f} us per "
            f"chunk); upstream CPU {self.upstream_cpu_s:.1f} s, clients CPU {self.client_cpu_s:.1f} s"
            f"{self._machine()}{self._late()}"
        )

    def _late(self) -> str:
        late = sum(self.late.values())
        if not late:
            return ""
        return (
            f"; over {P99_TARGET_MS:.0f} ms: {late:,} tokens ({late / max(self.chunks, 1):.1%}: "
            f"{self.late['start']:,} in a run's first second, {self.late['panel']:,} of the panel after it, "
            f"{self.late['fused']:,} of the fused answer)"
        )

    def _machine(self) -> str:
        """What Redis and PostgreSQL spent, and how busy every process of the run kept the cores."""
        if self.services_cpu_s is None or not self.wall_s:
            return ""
        spent = self.cpu_s + self.upstream_cpu_s + self.client_cpu_s + self.services_cpu_s
        cores = os.cpu_count() or 1
        busy = spent / (self.wall_s * cores)
        return f", Redis + PostgreSQL CPU {self.services_cpu_s:.1f} s; all of it {busy:.0%} of {cores} cores"

    def _split(self) -> str:
        if len(self.worker_cpu_s) < 2:
            return ""
        cpu = " + ".join(f"{seconds:.1f}" for seconds in self.worker_cpu_s)
        return f" (workers {cpu} s, with {' + '.join(map(str, self.sockets))} sockets)"


# --- the upstream process -------------------------------------------------------------------------------


def _serve_upstream(port: int, tokens_per_chunk: int, answer_words: int = ANSWER_WORDS) -> None:
    from tests.fakes import upstream as fake

    plain_chunk = fake._Answer.chunk

    def stamped(self: Any, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        content = delta.get("content")
        # The judge's reply must stay valid JSON; every other token carries its send time.
        if content and not str(self.request_model).endswith("judge"):
            delta = {**delta, "content": f"{content}\u27e6{time.time():.6f}\u27e7"}
        return plain_chunk(self, delta, finish_reason)

    fake._Answer.chunk = stamped  # type: ignore[method-assign]
    words = " ".join(f"word{i}" for i in range(answer_words))
    answer = fake.ModelScript(
        text=words,
        tokens_per_s=TOKENS_PER_S,
        chunk_words=tokens_per_chunk,
        comments=False,
    )
    # The judge's reply (an analysis made from the prompt) at the same pace as every other answer.
    judge = fake.ModelScript(tokens_per_s=TOKENS_PER_S, chunk_words=tokens_per_chunk, comments=False)
    upstream = fake.FakeUpstream(
        port=port,
        path_prefix="/v1",
        scripts={"a": answer, "b": answer, "c": answer, "judge": judge, "writer": answer},
        default=fake.ModelScript(comments=False),
    )

    async def serve() -> None:
        await upstream.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- rows the run needs ---------------------------------------------------------------------------------


def _prepare(size: int) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from apps.chat.services import conversation_create
    from apps.panels.models import Panel, PanelMember

    user, _ = get_user_model().objects.get_or_create(username="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    panel = Panel.objects.create(
        owner=user,
        name=f"Bench {size} {time.time_ns()}",
        slug=f"bench-{size}-{time.time_ns()}",
        judge_model="bench/judge",
        writer_model="bench/writer",
    )
    for position, model in enumerate(SEATS, start=1):
        PanelMember.objects.create(panel=panel, position=position, model_id=model)
    conversations = [conversation_create(owner=user).pk for _ in range(size)]
    print(json.dumps({"cookie": f"sessionid={session.session_key}", "panel": panel.pk, "ids": conversations}))


# --- the driver ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def process_stop(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float:
    return processes.cpu_seconds(pid)


def _services_cpu_s() -> float:
    """CPU seconds so far of the local Redis and PostgreSQL servers (every process of theirs we may read)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in SERVICES:
                total += _cpu_seconds(int(comm.parent.name))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return total


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class _Start:
    """The clients' starting line: sockets open ``CONNECTS_AT_ONCE`` at a time; every prompt goes once all are
    open."""

    expected: int
    spread_s: float = 0.0
    opening: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTS_AT_ONCE))
    all_open: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived == self.expected:
            self.all_open.set()


async def _client(url: str, origin: str, cookie: str, panel: int, result: Result, start: _Start) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    try:
        async with start.opening:
            ws = await connect(
                url,
                origin=Origin(origin),
                additional_headers={"Cookie": cookie},
                max_size=2**22,
                open_timeout=60,
            )
            hello = json.loads(await ws.recv())
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        return
    finally:
        start.arrive()
    try:
        async with ws:
            if hello.get("type") != "hello":
                result.errors.append(f"first frame {hello.get('type')}")
                return
            await start.go.wait()
            if start.spread_s:
                # Arrivals spread evenly over the first ``spread_s`` seconds, in random order.
                await asyncio.sleep(random.random() * start.spread_s)
            sent_at = time.time()
            await ws.send(json.dumps({"type": "send", "prompt": PROMPT, "panel": panel}))
            async with asyncio.timeout(RUN_TIMEOUT_S):
                async for raw in ws:
                    now = time.time()
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "deltas":
                        result.frames += 1
                        for delta in frame["deltas"]:
                            text = delta["text"]
                            for stamp in STAMP.findall(text):
                                delay_ms = (now - float(stamp)) * 1000
                                result.delays_ms.append(delay_ms)
                                result.chunks += 1
                                if delay_ms > P99_TARGET_MS:
                                    phase = "fused" if delta.get("final") else "panel"
                                    result.late["start" if now - sent_at < 1.0 else phase] += 1
                            result.tokens += len(WORD.findall(text))
                    elif kind == "error":
                        result.errors.append(f"error frame: {frame.get('message')}")
                        return
                    elif kind in ("html", "snapshot") and frame.get("status") not in (None, "running"):
                        if frame["status"] == "done":
                            result.done += 1
                        else:
                            result.errors.append(f"turn ended {frame['status']}")
                        return
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")


async def _drive(
    base: str, prepared: dict[str, Any], result: Result, pids: list[int], spread_s: float
) -> None:
    """Open every socket first, then send every prompt at once: the runs, not the handshakes, are the load."""
    origin = base.replace("ws://", "http://")
    start = _Start(expected=len(prepared["ids"]), spread_s=spread_s)
    cpu_started = time.process_time()
    clients = [
        asyncio.create_task(
            _client(
                f"{base}/ws/conversations/{cid}/",
                origin,
                prepared["cookie"],
                prepared["panel"],
                result,
                start,
            )
        )
        for cid in prepared["ids"]
    ]
    await start.all_open.wait()
    result.sockets = list(processes.connections_by_pid(pids, int(base.rsplit(":", 1)[1])).values())
    started = time.perf_counter()
    start.go.set()
    await asyncio.gather(*clients)
    result.wall_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - cpu_started


def _server(port: int, env: dict[str, str], workers: int | None, log: Any) -> subprocess.Popen[bytes]:
    """One Daphne (``workers`` None: the SQLite set-up), or the supervisor with ``workers`` Daphnes."""
    if workers is None:
        command = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "fusionroom.asgi:application"]
    else:
        command = ["-m", "fusionroom.serve", "--port", str(port), "--workers", str(workers)]
        command += ["--", "--access-log", os.devnull]
    return subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
    )


def _worker_pids(server: subprocess.Popen[bytes], port: int, workers: int | None) -> list[int]:
    """The processes that serve: Daphne itself, or the supervisor's workers once each accepts connections."""
    if workers is None:
        return [server.pid]
    deadline = time.monotonic() + 60
    while len(pids := processes.children(server.pid)) < workers:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the supervisor did not start {workers} workers")
        time.sleep(0.1)
    processes.wait_accepting(pids, port)
    return pids


def _scenario(
    size: int,
    env: dict[str, str],
    upstream_port: int,
    upstream_pid: int,
    workers: int | None = None,
    spread_s: float | None = None,
) -> Result:
    prepared = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.load", "--prepare", str(size)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        ).stdout.decode()
    )
    port = _free_port()
    result = Result(size=size)
    # A file, not a pipe: nobody reads a pipe during the run, and a full one would stall the server.
    with tempfile.TemporaryFile() as log:
        server = _server(port, env, workers, log)
        try:
            _wait_http(f"http://127.0.0.1:{port}/accounts/login/", server)
            pids = _worker_pids(server, port, workers)
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            upstream_cpu = _cpu_seconds(upstream_pid)
            services_cpu = _services_cpu_s() if workers is not None else None
            spread = ARRIVAL_SPREAD_S if spread_s is None else spread_s
            asyncio.run(_drive(f"ws://127.0.0.1:{port}", prepared, result, pids, spread))
            result.upstream_cpu_s = _cpu_seconds(upstream_pid) - upstream_cpu
            if services_cpu is not None:
                result.services_cpu_s = _services_cpu_s() - services_cpu
            result.peak_rss_mb = max(_peak_rss_mb(pid) for pid in pids)
            result.worker_cpu_s = [_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, cpu_before, strict=True)]
            result.cpu_s = sum(result.worker_cpu_s)
            if workers is not None and processes.children(server.pid) != pids:
                result.errors.append("a worker was restarted during the run")
        finally:
            process_stop(server)
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            if result.errors and tail:
                print("  Daphne said: " + " | ".join(tail))
    return result


def _report(result: Result, load_before: float) -> None:
    print(result.summary(), flush=True)
    # The figures only mean something on a quiet machine: say how busy it was.
    after = os.getloadavg()[0]
    print(f"  load average {load_before:.1f} before, {after:.1f} after ({os.cpu_count()} CPUs)")
    for error in sorted(set(result.errors))[:5]:
        print(f"  error: {error}")


def _measure(
    size: int,
    *,
    env: dict[str, str],
    upstream: tuple[int, int],
    chunks_per_s: float,
    results: dict[int, Result],
    workers: int | None = None,
    spread_s: float | None = None,
) -> Result:
    load_before = os.getloadavg()[0]
    arrivals = f", prompts arriving over {spread_s:g} s" if spread_s else ""
    print(f"  [{size} runs: {size * chunks_per_s:,.0f} chunks/s demanded{arrivals}]", flush=True)
    result = _scenario(size, env, *upstream, workers=workers, spread_s=spread_s)
    if spread_s is None:
        results[size] = result
    _report(result, load_before)
    return result


def _probe_ok(measure: Any, size: int) -> bool:
    """``size`` runs, ``CAPACITY_REPEATS`` times: no error in any, and the mean of their p99s under target."""
    results = [measure(size) for _ in range(CAPACITY_REPEATS)]
    p99 = statistics.mean(result.p99() for result in results)
    ok = p99 < P99_TARGET_MS and all(not result.errors and result.done == size for result in results)
    verdict = "kept" if ok else "too many"
    print(f"  -> {size} runs: mean p99 {p99:.1f} ms of {len(results)} runs, {verdict}", flush=True)
    return ok


def _capacity(measure: Any, sizes: tuple[int, ...], known: dict[int, Result]) -> int:
    """Bisect for the most concurrent runs with p99 under target and no error, in a few probes."""
    good = max((size for size, r in known.items() if r.ok()), default=0)
    bad = min((size for size, r in known.items() if not r.ok()), default=max(sizes) * 2)
    probes = 0
    while bad - good > max(2, good // 10) and probes < CAPACITY_PROBES:
        size = max(1, (good + bad) // 2) if good else max(1, bad // 4)
        probes += 1
        if _probe_ok(measure, size):
            good = size
        else:
            bad = size
    if good:
        print(
            f"capacity: {good} concurrent runs keep p99 under {P99_TARGET_MS:.0f} ms with no error "
            f"({good * len(SEATS) * TOKENS_PER_S:,.0f} tokens/s demanded); {bad} do not"
        )
    else:
        print(f"capacity: even {bad} concurrent runs miss p99 {P99_TARGET_MS:.0f} ms")
    return good


@contextlib.contextmanager
def _upstream(
    env: dict[str, str], per_chunk: int, answer_words: int = ANSWER_WORDS
) -> Iterator[tuple[int, int]]:
    """The loopback upstream in a process of its own, set as ``env``'s ``bench`` endpoint: (port, pid)."""
    upstream_port = _free_port()
    env["FUSIONROOM_ENDPOINTS"] = f"bench=http://127.0.0.1:{upstream_port}/v1"
    command = [sys.executable, "-m", "bench.load", "--upstream", str(upstream_port)]
    command += ["--answer-words", str(answer_words)]
    upstream = subprocess.Popen(
        [*command, "--tokens-per-chunk", str(per_chunk)], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert upstream.stdout is not None
        if upstream.stdout.readline().strip() != b"ready":
            raise RuntimeError("the loopback upstream did not start")
        yield upstream_port, upstream.pid
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def _workload(per_chunk: int, server: str) -> float:
    """Print what one run asks of the server; return the chunks per second it demands."""
    chunks_per_s = len(SEATS) * TOKENS_PER_S / per_chunk
    print(
        f"each run: {len(SEATS)} seats + judge + writer, {ANSWER_WORDS} tokens per answer "
        f"at {TOKENS_PER_S:.0f} tokens/s, {per_chunk} token(s) per chunk "
        f"({chunks_per_s:.0f} chunks/s per run while the panel streams), over the loopback "
        f"upstream; {server}"
    )
    return chunks_per_s


def _bench_env(**settings: str) -> dict[str, str]:
    """The server as deployed (``DEBUG`` off: no query log, no template debugging), on plain HTTP."""
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-used-by-nothing-else-0123456789abcdef",
        "SECURE_SSL_REDIRECT": "0",
        "PROVIDER_MAX_RETRIES": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def _migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def run_sqlite(sizes: tuple[int, ...], *, tokens_per_chunk: tuple[int, ...], capacity: bool) -> None:
    """One Daphne on SQLite with the in-memory channel layer, for each workload."""
    with tempfile.TemporaryDirectory(prefix="fusionroom-load-") as tmp:
        env = _bench_env(DATABASE_URL=f"sqlite:///{Path(tmp) / 'load.sqlite3'}")
        env.pop("REDIS_URL", None)
        _migrate(env)
        for per_chunk in tokens_per_chunk:
            with _upstream(env, per_chunk) as upstream:
                results: dict[int, Result] = {}
                measure = functools.partial(
                    _measure,
                    env=env,
                    upstream=upstream,
                    chunks_per_s=_workload(per_chunk, "one Daphne, SQLite"),
                    results=results,
                )
                for size in sizes:
                    measure(size)
                if per_chunk == TOKENS_PER_CHUNK and not ARRIVAL_SPREAD_S:
                    measure(SPREAD_SIZE, spread_s=SPREAD_S)
                if capacity:
                    _capacity(measure, sizes, results)
            if per_chunk == TOKENS_PER_CHUNK and max(sizes) in results:
                _per_chunk_split(env, per_chunk, max(sizes), results[max(sizes)])


def _per_chunk_split(env: dict[str, str], per_chunk: int, size: int, short: Result) -> None:
    """The CPU per relayed chunk at ``size`` runs, split as the relay floor is measured: ``size`` runs again
    with answers of ``LONG_ANSWER_WORDS`` tokens, and the difference in CPU over the difference in chunks.

    What a run costs whatever its length (its socket's start, the prompt's database work, the judge's
    stream, which is parsed but never relayed, the snapshots and final writes) drops out, as connection
    set-up drops out of the floor; what is left is what one more relayed token costs, to compare with the
    floor. Both figures are printed: the average is what the machine pays for these answers.
    """
    print(f"  [per-chunk split: {size} runs with {LONG_ANSWER_WORDS}-token answers]", flush=True)
    with _upstream(env, per_chunk, LONG_ANSWER_WORDS) as upstream:
        demand = len(SEATS) * TOKENS_PER_S / per_chunk
        long = _measure(size, env=env, upstream=upstream, chunks_per_s=demand, results={})
    extra_chunks = long.chunks - short.chunks
    if extra_chunks <= 0 or long.errors or short.errors:
        print("  per-chunk split: no figure (errors, or no more chunks with longer answers)")
        return
    marginal_us = (long.cpu_s - short.cpu_s) / extra_chunks * 1e6
    per_run_ms = (short.cpu_s - marginal_us * 1e-6 * short.chunks) / size * 1000
    print(
        f"per-chunk split at {size} runs: {marginal_us:.0f} us of CPU per relayed chunk beyond a run's fixed "
        f"cost (average {short.cpu_s / short.chunks * 1e6:.0f} us with {ANSWER_WORDS}-token answers, "
        f"{long.cpu_s / long.chunks * 1e6:.0f} us with {LONG_ANSWER_WORDS}); fixed cost {per_run_ms:.1f} ms "
        "of CPU per run; compare the first figure with the relay floor (python -m bench --only floor)"
    )


def scale_out_urls() -> tuple[str, str] | None:
    """``DATABASE_URL`` and ``REDIS_URL`` when they name a PostgreSQL database and a Redis one, else None."""
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not redis_url or database_is_sqlite(database_url):
        return None
    return database_url, redis_url


def run_postgres(sizes: tuple[int, ...], *, workers: tuple[int, ...], capacity: bool) -> None:
    """The supervisor with each number of ``workers`` on PostgreSQL + Redis, 1 token per chunk."""
    urls = scale_out_urls()
    if urls is None:
        print(
            "PostgreSQL + Redis, 1 and 2 processes: skipped (set DATABASE_URL to a PostgreSQL database and "
            "REDIS_URL to a Redis database, both the bench's own)"
        )
        return
    env = _bench_env(DATABASE_URL=urls[0], REDIS_URL=urls[1])
    _migrate(env)
    capacities: dict[int, int] = {}
    with _upstream(env, TOKENS_PER_CHUNK) as upstream:
        for count in workers:
            results: dict[int, Result] = {}
            measure = functools.partial(
                _measure,
                env=env,
                upstream=upstream,
                chunks_per_s=_workload(
                    TOKENS_PER_CHUNK,
                    f"{count} Daphne process(es) on one port (python -m fusionroom.serve --workers {count}), "
                    f"PostgreSQL + Redis, {os.cpu_count()} CPUs",
                ),
                results=results,
                workers=count,
            )
            for size in sizes:
                measure(size)
            if capacity:
                capacities[count] = _capacity(measure, sizes, results)
    if len(capacities) < 2:
        return
    base = min(capacities)
    for count, runs in sorted(capacities.items()):
        if count == base:
            continue
        compared = f"{runs} vs {capacities[base]} concurrent runs under p99 {P99_TARGET_MS:.0f} ms"
        if capacities[base]:
            print(f"{count} processes: {runs / capacities[base]:.2f}x the capacity of {base} ({compared})")
        else:
            print(f"{count} processes against {base}: no ratio, {base} held none ({compared})")


def run(
    sizes: tuple[int, ...] = SIZES,
    *,
    tokens_per_chunk: tuple[int, ...] = (1, 4),
    capacity: bool = True,
    setups: tuple[str, ...] = SETUPS,
    workers: tuple[int, ...] = WORKERS,
) -> None:
    if "sqlite" in setups:
        run_sqlite(sizes, tokens_per_chunk=tokens_per_chunk, capacity=capacity)
    if "postgres" in setups:
        run_postgres(sizes, workers=workers, capacity=capacity)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument(
        "--tokens-per-chunk", nargs="+", type=int, default=[1, 4], help="workloads to run (default: 1 4)"
    )
    parser.add_argument("--no-capacity", action="store_true", help="skip the capacity search")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="send the prompts at random moments over this many seconds (default 0: all at once)",
    )
    parser.add_argument(
        "--setups", nargs="+", choices=SETUPS, default=list(SETUPS), help="set-ups to run (default: both)"
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=list(WORKERS),
        help="postgres set-up: processes (default: 1 2)",
    )
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--answer-words", type=int, default=ANSWER_WORDS, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global ARRIVAL_SPREAD_S  # one run's setting, read by every scenario of it
    ARRIVAL_SPREAD_S = args.spread
    if args.upstream:
        _serve_upstream(args.upstream, args.tokens_per_chunk[0], args.answer_words)
    elif args.prepare:
        _prepare(args.prepare)
    else:
        run(
            tuple(args.sizes),
            tokens_per_chunk=tuple(args.tokens_per_chunk),
            capacity=not args.no_capacity,
            setups=tuple(args.setups),
            workers=tuple(args.workers),
        )


if __name__ == "__main__":
    main()
