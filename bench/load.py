"""Chatroom load: N conversations at once, each a 3-seat fusion, over real WebSockets against one Daphne.

``python -m bench --only load`` (or ``python -m bench.load --sizes 50 200``). For each size it starts

- the loopback upstream (``tests/fakes/upstream.py``) in a process of its own, configured as the endpoint
  ``bench`` (``FUSIONROOM_ENDPOINTS``): seats ``bench/a|b|c``, judge and writer, each answer streamed at a
  steady pace;
- one Daphne process serving the app on a fresh SQLite database;
- N WebSocket clients, one per conversation, which all send their prompt at once and read until the turn ends.

Printed: tokens relayed per second (text deltas reaching the clients), the delay from a token leaving the
upstream to reaching its client (p50/p99/max), errors (error frames, turns not done, broken sockets) and the
peak memory (VmHWM) of the Daphne process. The upstream stamps each chunk's send time (``x_sent_at``); that
field stops at the provider client, so this benchmark's upstream also writes the same clock reading into the
token text, where the client can read it back. The clients run on the same machine (same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (50, 200)
SEATS = ("bench/a", "bench/b", "bench/c")
# Per answer: words and pace (a word is one streamed chunk, so one delta).
ANSWER_WORDS = 60
TOKENS_PER_S = 20.0
RUN_TIMEOUT_S = 120.0
STAMP = re.compile(r"\u27e6(\d+\.\d+)\u27e7")
PROMPT = "Compare three ways to cache a slow API, and say which one a small team should pick."


@dataclass
class Result:
    size: int
    wall_s: float = 0.0
    tokens: int = 0
    delays_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> str:
        delays = sorted(self.delays_ms)

        def pct(p: float) -> float:
            return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else float("nan")

        rate = self.tokens / self.wall_s if self.wall_s else 0.0
        worst = max(delays, default=float("nan"))
        return (
            f"{self.size:>4} concurrent runs: {self.done}/{self.size} done in {self.wall_s:.1f} s, "
            f"{self.tokens:,} tokens relayed ({rate:,.0f}/s); upstream->client delay "
            f"p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {worst:.1f} ms; "
            f"errors {len(self.errors)}; Daphne peak memory {self.peak_rss_mb:.0f} MiB, "
            f"CPU {self.cpu_s:.1f} s"
        )


# --- the upstream process -------------------------------------------------------------------------------


def _serve_upstream(port: int) -> None:
    from tests.fakes import upstream as fake

    plain_chunk = fake._Answer.chunk

    def stamped(self: Any, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        content = delta.get("content")
        # The judge's reply must stay valid JSON; every other token carries its send time.
        if content and not str(self.request_model).endswith("judge"):
            delta = {**delta, "content": f"{content}\u27e6{time.time():.6f}\u27e7"}
        return plain_chunk(self, delta, finish_reason)

    fake._Answer.chunk = stamped  # type: ignore[method-assign]
    words = " ".join(f"word{i}" for i in range(ANSWER_WORDS))
    answer = fake.ModelScript(text=words, tokens_per_s=TOKENS_PER_S, comments=False)
    upstream = fake.FakeUpstream(
        port=port,
        path_prefix="/v1",
        scripts={"a": answer, "b": answer, "c": answer, "writer": answer},
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


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _client(url: str, origin: str, cookie: str, panel: int, result: Result) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    try:
        async with connect(
            url,
            origin=Origin(origin),
            additional_headers={"Cookie": cookie},
            max_size=2**22,
            open_timeout=60,
        ) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                result.errors.append(f"first frame {hello.get('type')}")
                return
            await ws.send(json.dumps({"type": "send", "prompt": PROMPT, "panel": panel}))
            async with asyncio.timeout(RUN_TIMEOUT_S):
                async for raw in ws:
                    now = time.time()
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "delta":
                        for stamp in STAMP.findall(frame["text"]):
                            result.delays_ms.append((now - float(stamp)) * 1000)
                            result.tokens += 1
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


async def _drive(base: str, prepared: dict[str, Any], result: Result) -> None:
    origin = base.replace("ws://", "http://")
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(f"{base}/ws/conversations/{cid}/", origin, prepared["cookie"], prepared["panel"], result)
            for cid in prepared["ids"]
        )
    )
    result.wall_s = time.perf_counter() - started


def _scenario(size: int, env: dict[str, str], upstream_port: int) -> Result:
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
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "fusionroom.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result = Result(size=size)
    try:
        _wait_http(f"http://127.0.0.1:{port}/accounts/login/", daphne)
        asyncio.run(_drive(f"ws://127.0.0.1:{port}", prepared, result))
        result.peak_rss_mb = _peak_rss_mb(daphne.pid)
        result.cpu_s = _cpu_seconds(daphne.pid)
    finally:
        daphne.terminate()
        try:
            _out, err = daphne.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daphne.kill()
            _out, err = daphne.communicate()
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        if result.errors and tail:
            print("  Daphne said: " + " | ".join(tail))
    return result


def run(sizes: tuple[int, ...] = SIZES) -> None:
    with tempfile.TemporaryDirectory(prefix="fusionroom-load-") as tmp:
        upstream_port = _free_port()
        env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{Path(tmp) / 'load.sqlite3'}",
            "FUSIONROOM_ENDPOINTS": f"bench=http://127.0.0.1:{upstream_port}/v1",
            "PROVIDER_MAX_RETRIES": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        upstream = subprocess.Popen(
            [sys.executable, "-m", "bench.load", "--upstream", str(upstream_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        try:
            assert upstream.stdout is not None
            if upstream.stdout.readline().strip() != b"ready":
                raise RuntimeError("the loopback upstream did not start")
            print(
                f"each run: {len(SEATS)} seats + judge + writer, {ANSWER_WORDS} tokens per answer "
                f"at {TOKENS_PER_S:.0f} tokens/s, over the loopback upstream; one Daphne, SQLite"
            )
            for size in sizes:
                load_before = os.getloadavg()[0]
                result = _scenario(size, env, upstream_port)
                print(result.summary(), flush=True)
                # The figures only mean something on a quiet machine: say how busy it was.
                after = os.getloadavg()[0]
                print(f"  load average {load_before:.1f} before, {after:.1f} after ({os.cpu_count()} CPUs)")
                for error in sorted(set(result.errors))[:5]:
                    print(f"  error: {error}")
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upstream:
        _serve_upstream(args.upstream)
    elif args.prepare:
        _prepare(args.prepare)
    else:
        run(tuple(args.sizes))


if __name__ == "__main__":
    main()
