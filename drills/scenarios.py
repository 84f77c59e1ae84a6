"""The cluster the drills run on, and the six drills.

The cluster: two Daphne processes, A and B, on the same PostgreSQL database and Redis, with OpenRouter pointed
at the loopback upstream (``tests/fakes/upstream.py``, in a thread of this process) whose models are scripted
below. Each drill is an async function of the cluster that returns one line saying what held, with the
figure it measured, or raises ``DrillFailed`` saying what did not.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.chat.flusher import loss_bound_seconds
from drills.harness import (
    DrillFailed,
    SavedTurn,
    Server,
    Viewer,
    conversation_new,
    http_client,
    panel_create,
    server_kill,
    server_start,
    server_stop,
    sign_up,
    turn_saved,
)
from tests.fakes.upstream import FakeUpstream, ModelScript

# Set low so drill 2 takes seconds; the heartbeat must come well within it.
STALE_AFTER_S = 5.0
HEARTBEAT_S = 1.0
KILL_AFTER_S = 3.0
DB_KILL_AFTER_S = 1.5
IDLE_S = 13.0
CANCEL_AT_S = 8.0
DEADLINE_S = 4.0
FAULT_AFTER_CHUNKS = 5
RUN_TIMEOUT_S = 30.0

JUDGE = "drill/judge"
WRITER = "drill/writer"


def _words(tag: str, count: int) -> str:
    return " ".join(f"{tag}-{index:03d}" for index in range(count))


def _answer(tag: str, words: int, tokens_per_s: float) -> ModelScript:
    return ModelScript(text=_words(tag, words), tokens_per_s=tokens_per_s, comments=False)


# Seat models by panel. "slow" seats are still streaming at CANCEL_AT_S; "steady" ones run a few seconds.
QUICK = [f"drill/quick-{n}" for n in (1, 2, 3)]
SLOW = [f"drill/slow-{n}" for n in (1, 2, 3)]
STEADY = [f"drill/steady-{n}" for n in (1, 2, 3)]
FAULTS = ["drill/ok", "drill/flaky-503", "drill/limited-429", "drill/broken", "drill/stall"]
FAULT_TEXT = _words("partial", 60)


def upstream_make() -> FakeUpstream:
    """The loopback OpenRouter: every drill model scripted, all of them priced in its catalog."""
    scripts: dict[str, Any] = {}
    for model in QUICK:
        scripts[model] = _answer(model.split("/")[1], 30, 60.0)
    for model in SLOW:
        scripts[model] = _answer(model.split("/")[1], 300, 25.0)
    for model in STEADY:
        scripts[model] = _answer(model.split("/")[1], 120, 30.0)
    fine = _answer("ok", 30, 40.0)
    scripts["drill/ok"] = fine
    scripts["drill/flaky-503"] = [ModelScript(error_status=503, error_message="Service unavailable"), fine]
    scripts["drill/limited-429"] = [
        ModelScript(error_status=429, error_message="Rate limited", retry_after="1"),
        fine,
    ]
    scripts["drill/broken"] = ModelScript(
        text=FAULT_TEXT,
        tokens_per_s=30.0,
        comments=False,
        error_mid_stream_after=FAULT_AFTER_CHUNKS,
        error_message="The provider dropped the answer",
    )
    scripts["drill/stall"] = ModelScript(
        text=FAULT_TEXT, tokens_per_s=30.0, comments=False, stall_after=FAULT_AFTER_CHUNKS
    )
    scripts[WRITER] = _answer("fused", 40, 80.0)
    # The judge is unscripted: the fake answers a valid analysis naming the panel's models.
    models = [*QUICK, *SLOW, *STEADY, *FAULTS, JUDGE, WRITER]
    catalog = [
        {
            "id": model,
            "name": f"Drill: {model}",
            "context_length": 32768,
            "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0"},
            "supported_parameters": ["max_tokens", "temperature", "response_format", "structured_outputs"],
        }
        for model in models
    ]
    return FakeUpstream(scripts=scripts, models=catalog, default=ModelScript(comments=False))


def server_env(upstream_url: str) -> dict[str, str]:
    """What each Daphne runs with: this environment (DATABASE_URL, REDIS_URL) plus the drills' settings."""
    env = {
        **os.environ,
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OPENROUTER_API_KEY": "drill-key",
        "OPENROUTER_BASE_URL": upstream_url,
        "CHAT_STALE_AFTER_SECONDS": f"{STALE_AFTER_S:g}",
        "CHAT_HEARTBEAT_SECONDS": f"{HEARTBEAT_S:g}",
        "CHAT_SNAPSHOT_TIMEOUT_SECONDS": "1",
        "WEB_FETCH": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    # No DATABASE_CONN_MAX_AGE: the servers keep the connection pool settings give PostgreSQL in production,
    # whose open connections give drill 3 something to kill.
    for name in ("FUSIONROOM_ENDPOINTS", "WEB_SEARCH_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_CONN_MAX_AGE"):
        env.pop(name, None)
    return env


@dataclass
class Cluster:
    env: dict[str, str]
    log_dir: Path
    upstream: FakeUpstream
    servers: dict[str, Server] = field(default_factory=dict)
    username: str = ""
    cookie: str = ""
    panels: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    async def start(self, *names: str) -> None:
        started = await asyncio.gather(
            *(asyncio.to_thread(server_start, name, env=self.env, log_dir=self.log_dir) for name in names),
            return_exceptions=True,
        )
        # Every process that did start is kept, to be stopped at the end, even if another one failed.
        for outcome in started:
            if isinstance(outcome, Server):
                self.servers[outcome.name] = outcome
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome

    async def restart(self, name: str) -> None:
        await asyncio.to_thread(server_stop, self.servers[name])
        await self.start(name)

    def stop_all(self) -> None:
        for server in self.servers.values():
            server_stop(server)


async def cluster_prepare(cluster: Cluster) -> None:
    """Both processes up, the drills' user signed up through A's pages, its panels saved."""
    await cluster.start("A", "B")
    cluster.username = f"drill-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    cluster.cookie = await sign_up(
        cluster["A"], username=cluster.username, password=secrets.token_urlsafe(16)
    )
    specs: dict[str, tuple[list[str], dict[str, Any]]] = {
        "quick": (QUICK, {}),
        "slow": (SLOW, {}),
        "steady": (STEADY, {}),
        "faults": (FAULTS, {"deadline_s": DEADLINE_S}),
    }
    for name, (seats, options) in specs.items():
        cluster.panels[name] = await panel_create(
            username=cluster.username, name=name, seats=seats, judge=JUDGE, writer=WRITER, options=options
        )


# --- helpers -------------------------------------------------------------------------------------------


async def _room(cluster: Cluster) -> tuple[int, Viewer, Viewer]:
    """A fresh conversation with one viewer on A (which sends, so its runs belong to A) and one on B."""
    conversation = await conversation_new(username=cluster.username)
    on_a = await Viewer.open(cluster["A"], conversation, cluster.cookie)
    try:
        on_b = await Viewer.open(cluster["B"], conversation, cluster.cookie)
    except BaseException:
        await on_a.close()
        raise
    return conversation, on_a, on_b


async def _send(viewer: Viewer, cluster: Cluster, panel: str, prompt: str) -> int:
    known = set(viewer.turns)
    await viewer.send({"type": "send", "prompt": prompt, "panel": cluster.panels[panel]})
    return await viewer.new_turn(known)


async def _run_to_end(viewer: Viewer, cluster: Cluster, panel: str, prompt: str) -> tuple[int, float]:
    """Send a prompt and wait until this viewer sees its turn end; the turn and the seconds it took."""
    started = time.monotonic()
    turn = await _send(viewer, cluster, panel, prompt)
    await viewer.until(lambda: viewer.ended(turn), RUN_TIMEOUT_S, f"the end of turn {turn}")
    if viewer.status[turn] != "done":
        saved = await turn_saved(turn)
        raise DrillFailed(f"turn {turn} ended {viewer.status[turn]}: {saved.error_message}")
    return turn, time.monotonic() - started


def _seat_chars(viewer: Viewer, turn: int) -> int:
    return sum(
        len(column.text) for (t, key), column in viewer.columns.items() if t == turn and key != "final"
    )


def _same_as_seen(viewer: Viewer, turn: int, saved: SavedTurn) -> int:
    """Every saved text equals what the viewer rebuilt from the deltas; the characters compared."""
    compared = 0
    for seat, answer in saved.seats.items():
        if viewer.text(turn, f"seat-{seat}") != answer.content:
            raise DrillFailed(f"seat {seat}: the text {viewer.name} rebuilt differs from the saved one")
        compared += len(answer.content)
    if viewer.text(turn, "final") != saved.final_text:
        raise DrillFailed(f"the fused answer {viewer.name} rebuilt differs from the saved one")
    if viewer.gaps or viewer.duplicates:
        raise DrillFailed(f"{viewer.name} saw {viewer.gaps} gaps and {viewer.duplicates} duplicates")
    return compared + len(saved.final_text)


async def _close(*viewers: Viewer) -> None:
    await asyncio.gather(*(viewer.close() for viewer in viewers), return_exceptions=True)


# --- the drills ----------------------------------------------------------------------------------------


async def drill_follow(cluster: Cluster) -> str:
    """1. A run started on A is followed live on B; what B rebuilt is what was saved."""
    _conversation, on_a, on_b = await _room(cluster)
    try:
        sent = time.monotonic()
        turn = await _send(on_a, cluster, "quick", "Which cache should a small team pick?")
        await on_b.until(lambda: _seat_chars(on_b, turn) > 0, 10, "the first delta")
        first_ms = (time.monotonic() - sent) * 1000
        await on_b.until(lambda: on_b.ended(turn), RUN_TIMEOUT_S, "the end of the run")
        saved = await turn_saved(turn)
        if on_b.status[turn] != "done" or saved.status != "done" or not saved.final_text:
            raise DrillFailed(f"the run ended {on_b.status[turn]} on B, {saved.status} in the database")
        compared = _same_as_seen(on_b, turn, saved)
        deltas = sum(column.deltas for (t, _key), column in on_b.columns.items() if t == turn)
        if not deltas:
            raise DrillFailed("B got the texts only as whole snapshots, not as live deltas")
    finally:
        await _close(on_a, on_b)
    return (
        f"run on A, viewer on B: {deltas} deltas, first {first_ms:.0f} ms after the send; "
        f"{compared:,} characters (3 seats + fused answer) rebuilt on B == saved; no gap, no duplicate"
    )


async def drill_kill(cluster: Cluster) -> str:
    """2. ``kill -9`` of the process running a turn: interrupted in time, seen text kept, B goes on."""
    bound = loss_bound_seconds()
    conversation, on_a, on_b = await _room(cluster)
    try:
        turn = await _send(on_a, cluster, "slow", "Explain write-ahead logging slowly.")
        await on_b.until(lambda: _seat_chars(on_b, turn) > 0, 10, "the first delta")
        await asyncio.sleep(KILL_AFTER_S)
        killed_at = time.monotonic()
        server_kill(cluster["A"])
        interrupted_after = await _wait_interrupted(
            cluster["B"], cluster.cookie, conversation, turn, killed_at
        )
        saved = await turn_saved(turn)
        seen = kept = 0
        worst = 0.0
        for seat, answer in saved.seats.items():
            column = on_b.column(turn, f"seat-{seat}")
            if not column.text.startswith(answer.content):
                raise DrillFailed(f"seat {seat}: the saved text is not what viewers saw")
            seen += len(column.text)
            kept += len(answer.content)
            first_lost = column.seen_at(len(answer.content))
            if first_lost is not None:
                worst = max(worst, killed_at - first_lost)
        if not kept:
            raise DrillFailed("nothing that streamed before the kill was saved")
        if worst > bound:
            raise DrillFailed(f"text seen {worst:.2f} s before the kill was lost (bound {bound:g} s)")
        _next_turn, took = await _run_to_end(on_b, cluster, "quick", "And after the crash?")
    finally:
        await _close(on_a, on_b)
        await cluster.restart("A")
    return (
        f"interrupted {interrupted_after:.2f} s after the kill (CHAT_STALE_AFTER_SECONDS={STALE_AFTER_S:g}, "
        f"page loaded every 0.1 s); "
        f"kept {kept:,} of {seen:,} characters seen; oldest unsaved text seen {worst:.2f} s before the kill "
        f"(bound {bound:g} s); next prompt on B done in {took:.1f} s"
    )


async def _wait_interrupted(server: Server, cookie: str, conversation: int, turn: int, since: float) -> float:
    """Load the conversation's page on ``server`` (which reaps stale turns) until ``turn`` is interrupted."""
    deadline = since + STALE_AFTER_S + 5.0
    async with http_client(server, cookie) as client:
        while True:
            page = await client.get(f"/c/{conversation}/")
            status = (await turn_saved(turn)).status
            if status == "interrupted":
                waited = time.monotonic() - since
                # Seen at most one poll and one page load after it became due: allow a busy machine that much.
                if waited > STALE_AFTER_S + 1.0:
                    raise DrillFailed(f"interrupted only {waited:.1f} s after the kill")
                return waited
            if status != "running" or page.status_code != 200:
                raise DrillFailed(f"after the kill the turn is {status} (page {page.status_code})")
            if time.monotonic() > deadline:
                raise DrillFailed(f"still running {deadline - since:.0f} s after the kill")
            await asyncio.sleep(0.1)


def _terminate_app_connections(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (connection.info.dbname,),
        ).fetchall()
    return sum(1 for (terminated,) in rows if terminated)


async def drill_database(cluster: Cluster) -> str:
    """3. The app's database connections killed mid-run: the run ends cleanly, the next prompt works."""
    conversation, on_a, on_b = await _room(cluster)
    fresh: list[Viewer] = []
    try:
        turn = await _send(on_a, cluster, "steady", "Compare three queues.")
        await on_b.until(lambda: _seat_chars(on_b, turn) > 0, 10, "the first delta")
        await asyncio.sleep(DB_KILL_AFTER_S)
        killed = await asyncio.to_thread(_terminate_app_connections, cluster.env["DATABASE_URL"])
        await on_b.until(lambda: on_b.ended(turn), RUN_TIMEOUT_S, "the end of the run")
        saved = await turn_saved(turn)
        if saved.status != on_b.status[turn]:
            raise DrillFailed(
                f"viewers saw the run end {on_b.status[turn]}, the database says {saved.status}"
            )
        if saved.status == "done":
            outcome = f"the run finished ({_same_as_seen(on_b, turn, saved):,} characters saved == seen)"
        elif saved.status in ("failed", "interrupted") and saved.error_message:
            outcome = f"the run ended {saved.status}, visibly: {saved.error_message!r}"
        else:
            raise DrillFailed(f"the run ended {saved.status} with no message")
        if not killed:
            raise DrillFailed("no database connection was open to kill: the drill tested nothing")
        # The next prompt as a person who reloads sends it: a page load and a new socket on each process.
        for name in ("A", "B"):
            async with http_client(cluster[name], cluster.cookie) as client:
                page = await client.get(f"/c/{conversation}/")
            if page.status_code != 200:
                raise DrillFailed(f"after the kill, reloading the page on {name} answered {page.status_code}")
            fresh.append(await Viewer.open(cluster[name], conversation, cluster.cookie))
        next_turn, took = await _run_to_end(fresh[0], cluster, "quick", "Still there?")
        await fresh[1].until(lambda: fresh[1].ended(next_turn), 10, "the end of the next run")
    finally:
        await _close(on_a, on_b, *fresh)
        # Whatever went wrong stays here: the later drills start on fresh processes.
        await asyncio.gather(cluster.restart("A"), cluster.restart("B"))
    return (
        f"{killed} connections killed {DB_KILL_AFTER_S:g} s into the run: {outcome}; after it, pages, "
        f"new sockets and the next prompt work on A and B (done in {took:.1f} s)"
    )


async def _answers_a_frame(viewer: Viewer) -> None:
    """The socket is open and its consumer answers (a resync of a turn that does not exist: an error)."""
    if viewer.closed:
        raise DrillFailed(f"the idle socket on {viewer.name} was closed ({viewer.ws.close_code})")
    errors = len(viewer.errors)
    await viewer.send({"type": "resync", "turn": 2_000_000_000})
    await viewer.until(lambda: len(viewer.errors) > errors, 5, "an answer after the idle time")


async def drill_idle(cluster: Cluster) -> str:
    """4. Sockets idle past 12 s stay open on both processes, and still carry frames both ways."""
    _conversation, on_a, on_b = await _room(cluster)
    try:
        await asyncio.sleep(IDLE_S)
        for viewer in (on_a, on_b):
            await _answers_a_frame(viewer)
        turn, took = await _run_to_end(on_a, cluster, "quick", "Awake?")
        await on_b.until(lambda: on_b.ended(turn), 10, "the end of the run after the idle time")
    finally:
        await _close(on_a, on_b)
    return (
        f"sockets idle {IDLE_S:g} s on A and B: both open, both answered a frame, "
        f"both followed the next run (done in {took:.1f} s)"
    )


async def drill_cancel(cluster: Cluster) -> str:
    """5. Cancel from B at 8 s stops a run on A: cancelled, upstream streams closed, no judge or writer."""
    _conversation, on_a, on_b = await _room(cluster)
    mark = len(cluster.upstream.requests)
    streams_before = cluster.upstream.active_streams
    try:
        sent = time.monotonic()
        turn = await _send(on_a, cluster, "slow", "Walk me through consensus protocols.")
        await asyncio.sleep(max(0.0, sent + CANCEL_AT_S - time.monotonic()))
        if on_b.status.get(turn) != "running":
            raise DrillFailed(f"the run was {on_b.status.get(turn)} before the cancel")
        cancelled_at = time.monotonic()
        await on_b.send({"type": "cancel", "turn": turn})
        await on_b.until(lambda: on_b.ended(turn), 10, "the end of the cancelled run")
        took_ms = (time.monotonic() - cancelled_at) * 1000
        await on_a.until(lambda: on_a.ended(turn), 5, "the end of the cancelled run")
        saved = await turn_saved(turn)
        if on_b.status[turn] != "cancelled" or saved.status != "cancelled":
            raise DrillFailed(f"the run ended {on_b.status[turn]} on B, {saved.status} in the database")
        called = [r.model for r in cluster.upstream.requests[mark:] if r.model in (JUDGE, WRITER)]
        charged = [step for step in saved.totals.get("steps", []) if step.get("role") in ("judge", "writer")]
        if called or charged:
            raise DrillFailed(f"after the cancel: judge/writer requests {called}, steps {charged}")
        for _tick in range(60):  # 3 s
            if cluster.upstream.active_streams <= streams_before:
                break
            await asyncio.sleep(0.05)
        else:
            raise DrillFailed("the seats' upstream streams were still open 3 s after the cancel")
    finally:
        await _close(on_a, on_b)
    return (
        f"cancel from B {CANCEL_AT_S:g} s into a run on A: cancelled {took_ms:.0f} ms later on B and A; "
        f"seats' upstream streams closed; judge/writer requests 0, cost $0"
    )


async def drill_faults(cluster: Cluster) -> str:
    """6. A 503, a 429 with Retry-After, a mid-stream error and a stall: each seat ends as promised."""
    upstream = cluster.upstream
    mark = len(upstream.requests)
    _conversation, on_a, on_b = await _room(cluster)
    try:
        turn, took = await _run_to_end(on_a, cluster, "faults", "What could go wrong?")
        await on_b.until(lambda: on_b.ended(turn), 5, "the end of the run")
        saved = await turn_saved(turn)
    finally:
        await _close(on_a, on_b)
    requests = upstream.requests[mark:]

    def calls(model: str) -> list[float]:
        return [r.received_at for r in requests if r.model == model]

    ok, flaky, limited, broken, stalled = (saved.seats[n] for n in (1, 2, 3, 4, 5))
    partial = "".join(FAULT_TEXT.split(" ")[i] + " " for i in range(FAULT_AFTER_CHUNKS))
    if ok.status != "done":
        raise DrillFailed(f"the healthy seat ended {ok.status}")
    if flaky.status != "done" or len(calls("drill/flaky-503")) != 2:
        raise DrillFailed(f"the 503 seat ended {flaky.status} after {len(calls('drill/flaky-503'))} requests")
    limited_calls = calls("drill/limited-429")
    if limited.status != "done" or len(limited_calls) != 2:
        raise DrillFailed(f"the 429 seat ended {limited.status} after {len(limited_calls)} requests")
    waited = limited_calls[1] - limited_calls[0]
    if waited < 0.99:
        raise DrillFailed(f"the 429 seat was retried {waited:.2f} s later, before its Retry-After of 1 s")
    if broken.status != "failed" or broken.content != partial or not broken.error:
        raise DrillFailed(f"the mid-stream error seat ended {broken.status} with {broken.content!r}")
    if stalled.status != "missing" or stalled.content != partial or "deadline" not in stalled.error:
        raise DrillFailed(
            f"the stalled seat ended {stalled.status} ({stalled.error}) with {stalled.content!r}"
        )
    for seat in (4, 5):
        if on_a.text(turn, f"seat-{seat}") != saved.seats[seat].content:
            raise DrillFailed(f"seat {seat}: the partial text saved is not the text viewers saw")
    writer_asked = " ".join(
        str(m.get("content")) for r in requests if r.model == WRITER for m in r.body["messages"]
    )
    if (
        saved.status != "done"
        or not saved.final_text
        or any(answer.content not in writer_asked for answer in (ok, flaky, limited))
    ):
        raise DrillFailed(f"no fused answer from the healthy seats (turn {saved.status})")
    return (
        f"503: retried, done; 429: retried {waited:.2f} s later (Retry-After 1), done; "
        f"mid-stream error: failed ({broken.error}), {len(partial)} characters kept; "
        f"stall: cut by the {DEADLINE_S:g} s deadline, {len(partial)} characters kept; "
        f"fused answer of {len(saved.final_text)} characters from the other seats, run {took:.1f} s"
    )


Drill = Callable[[Cluster], Awaitable[str]]
# (number, title, drill, time limit in seconds)
DRILLS: list[tuple[int, str, Drill, float]] = [
    (1, "a run on A followed live on B", drill_follow, 40.0),
    (2, "kill -9 of the process running a turn", drill_kill, 60.0),
    (3, "database connections killed mid-run", drill_database, 60.0),
    (4, "idle sockets past 12 s", drill_idle, 45.0),
    (5, "cancel at 8 s from the other process", drill_cancel, 40.0),
    (6, "seat faults from the upstream", drill_faults, 40.0),
]
