"""Concurrent writers on the embedded default: API fusions and chatroom turns at once, one Daphne, SQLite.

``python -m bench --only writers`` (or ``python -m bench.writers --size 50``). For each SQLite transaction
mode (``IMMEDIATE``, the setting, and ``DEFERRED``, SQLite's own default, through the database URL's query) it
starts one Daphne on a fresh SQLite file with the offline demo panel and sends, all at the same moment,
``size`` fusions over the API (``model: fusion/demo``, half streamed) and ``size`` chatroom turns over real
WebSockets. Every one of them writes (the conversation, the turn and its answers, flushed text, the key's
last use) from a connection of its own.

Printed per mode: how many completed, how many failed (HTTP 500s, error frames, turns not done), the wall
time and the p50/p99 time to complete one. The two modes run in the same invocation, so compare them with
each other rather than with figures from another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load import ROOT, _free_port, _wait_http, process_stop

SIZE = 50
MODES = ("IMMEDIATE", "DEFERRED")
PROMPT = "Which is better for a small team, PostgreSQL or MySQL?"
# Seconds per streamed word of the demo models: runs overlap for a while, as real ones do.
DEMO_DELAY = "0.002"


@dataclass
class Outcome:
    mode: str
    size: int
    wall_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = sorted(self.seconds)

        def pct(p: float) -> float:
            return done[min(len(done) - 1, int(p * len(done)))] if done else float("nan")

        return (
            f"{self.mode:>9}: {len(done)}/{2 * self.size} completed, {len(self.errors)} failed, "
            f"in {self.wall_s:.1f} s; one completes in p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s"
        )


def _prepare(size: int) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from apps.accounts.api_keys import api_key_create
    from apps.chat.services import conversation_create
    from apps.panels.models import Panel

    user = get_user_model().objects.create_user(username=f"writers-{time.time_ns()}")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    keys = [api_key_create(user=user, name=f"writer {i}")[1] for i in range(size)]
    prepared = {
        "cookie": f"sessionid={session.session_key}",
        "panel": Panel.objects.get(owner=None, slug="demo").pk,
        "conversations": [conversation_create(owner=user).pk for _ in range(size)],
        "keys": keys,
    }
    print(json.dumps(prepared))


async def _api(client: httpx.AsyncClient, key: str, stream: bool, outcome: Outcome) -> None:
    body = {"model": "fusion/demo", "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    started = time.perf_counter()
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with client.stream("POST", "/api/v1/chat/completions", json=body, headers=headers) as response:
            payload = await response.aread()
        if response.status_code != 200:
            outcome.errors.append(f"HTTP {response.status_code}")
        elif stream and not payload.rstrip().endswith(b"data: [DONE]"):
            outcome.errors.append("stream ended without [DONE]")
        else:
            outcome.seconds.append(time.perf_counter() - started)
    except Exception as exc:
        outcome.errors.append(f"{type(exc).__name__}: {exc}")


async def _chat(base: str, prepared: dict[str, Any], conversation: int, outcome: Outcome) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    started = time.perf_counter()
    try:
        url = f"ws://{base}/ws/conversations/{conversation}/"
        headers = {"Cookie": prepared["cookie"]}
        async with connect(url, origin=Origin(f"http://{base}"), additional_headers=headers) as ws:
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "send", "prompt": PROMPT, "panel": prepared["panel"]}))
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "error":
                    outcome.errors.append(f"error frame: {frame.get('message')}")
                    return
                if frame.get("type") in ("html", "snapshot") and frame.get("status") not in (None, "running"):
                    if frame["status"] == "done":
                        outcome.seconds.append(time.perf_counter() - started)
                    else:
                        outcome.errors.append(f"turn ended {frame['status']}")
                    return
        outcome.errors.append("socket closed mid-turn")
    except Exception as exc:
        outcome.errors.append(f"{type(exc).__name__}: {exc}")


async def _drive(base: str, prepared: dict[str, Any], outcome: Outcome) -> None:
    limits = httpx.Limits(max_connections=outcome.size)
    async with httpx.AsyncClient(base_url=f"http://{base}", timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(
            *(_api(client, key, i % 2 == 0, outcome) for i, key in enumerate(prepared["keys"])),
            *(_chat(base, prepared, cid, outcome) for cid in prepared["conversations"]),
        )
        outcome.wall_s = time.perf_counter() - started


def _scenario(mode: str, size: int, folder: Path) -> Outcome:
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{folder / f'{mode.lower()}.sqlite3'}?transaction_mode={mode}",
        "DEMO_MODEL_DELAY": DEMO_DELAY,
        "OPENROUTER_API_KEY": "",
        "API_RATE_LIMIT_PER_MINUTE": str(10 * size),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "CRITICAL",
    }
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    prepared = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.writers", "--prepare", str(size)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        ).stdout
    )
    port = _free_port()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "fusionroom.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outcome = Outcome(mode=mode, size=size)
    try:
        _wait_http(f"http://127.0.0.1:{port}/accounts/login/", daphne)
        asyncio.run(_drive(f"127.0.0.1:{port}", prepared, outcome))
    finally:
        process_stop(daphne)
    return outcome


def run(size: int = SIZE) -> None:
    print(f"{size} API fusions (fusion/demo) + {size} chatroom turns at once, one Daphne, SQLite")
    with tempfile.TemporaryDirectory(prefix="fusionroom-writers-") as tmp:
        for mode in MODES:
            outcome = _scenario(mode, size, Path(tmp))
            print(outcome.summary(), flush=True)
            for error in sorted(set(outcome.errors))[:3]:
                print(f"    {error} (x{outcome.errors.count(error)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writers", description=__doc__)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        _prepare(args.prepare)
    else:
        run(args.size)


if __name__ == "__main__":
    main()
