"""The supervisor (``python -m fusionroom.serve``): one port, one Daphne per core, restarts, clean stops.

The rules on how many workers may run are checked as plain function calls. The processes are real: a
supervisor whose "Python" is ``false`` shows the back-off and the giving up without Django; the rest runs
real Daphne workers on the test PostgreSQL database and Redis (skipped without both). Which worker holds a
connection is read from ``/proc`` (``tests/processes.py``), so the app carries no marker for the tests.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusionroom.serve import (
    EXIT_FAILED,
    EXIT_REFUSED,
    STOP_TIMEOUT_S,
    Plan,
    ServeRefused,
    Supervisor,
    database_is_sqlite,
    listening_sockets,
    plan_from,
)
from tests import processes
from tests.live_server import PROJECT_ROOT, database_url

POSTGRES = "postgres://fusion@127.0.0.1:5432/fusionroom"
REDIS = "redis://127.0.0.1:6379/0"
REDIS_URL = os.environ.get("REDIS_URL", "")
SCALE_OUT = bool(REDIS_URL) and not database_is_sqlite(os.environ.get("DATABASE_URL", ""))
START_TIMEOUT_S = 60.0
CONNECTIONS = 40
SERVE = (sys.executable, "-m", "fusionroom.serve")


# --- the rules, without processes ------------------------------------------------------------------------


def test_with_postgres_and_redis_it_runs_one_worker_per_core() -> None:
    plan = plan_from([], {"DATABASE_URL": POSTGRES, "REDIS_URL": REDIS}, cores=4)
    assert plan == Plan(host="127.0.0.1", port=8000, workers=4)


def test_web_workers_overrides_the_core_count_and_the_flag_overrides_both() -> None:
    environ = {"DATABASE_URL": POSTGRES, "REDIS_URL": REDIS, "WEB_WORKERS": "3"}
    assert plan_from([], environ, cores=8).workers == 3
    assert plan_from(["--workers", "2"], environ, cores=8).workers == 2


def test_one_worker_needs_neither_postgres_nor_redis() -> None:
    assert plan_from(["--workers", "1"], {}, cores=4).workers == 1
    assert plan_from([], {"WEB_WORKERS": "1"}, cores=4).workers == 1
    assert plan_from([], {}, cores=1).workers == 1


@pytest.mark.parametrize(
    "environ",
    [{"DATABASE_URL": POSTGRES}, {"DATABASE_URL": POSTGRES, "REDIS_URL": "  "}],
    ids=["unset", "blank"],
)
def test_more_than_one_worker_without_redis_is_refused_saying_why(environ: dict[str, str]) -> None:
    with pytest.raises(ServeRefused) as refused:
        plan_from(["--workers", "2"], environ, cores=4)
    assert "need REDIS_URL" in str(refused.value)
    assert "--workers 1" in str(refused.value)


@pytest.mark.parametrize("database_url", ["", "sqlite:///db.sqlite3", "sqlite:////srv/fusion.sqlite3"])
def test_more_than_one_worker_on_sqlite_is_refused_saying_why(database_url: str) -> None:
    with pytest.raises(ServeRefused) as refused:
        plan_from([], {"DATABASE_URL": database_url, "REDIS_URL": REDIS}, cores=2)
    assert "SQLite" in str(refused.value)
    assert "one per core" in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "environ", "words"),
    [
        (["--workers", "0"], {}, "--workers must be at least 1"),
        ([], {"WEB_WORKERS": "0"}, "WEB_WORKERS must be at least 1"),
        ([], {"WEB_WORKERS": "two"}, "WEB_WORKERS must be a whole number"),
        (["--port", "70000"], {}, "--port must be between"),
    ],
)
def test_impossible_numbers_are_refused(argv: list[str], environ: dict[str, str], words: str) -> None:
    with pytest.raises(ServeRefused, match=re.escape(words)):
        plan_from(argv, environ, cores=1)


def test_daphne_options_pass_through_except_those_that_choose_the_socket() -> None:
    plan = plan_from(["--workers", "1", "--", "--proxy-headers", "--access-log", "-"], {}, cores=1)
    assert plan.daphne_args == ("--proxy-headers", "--access-log", "-")
    for option in (["-p", "9000"], ["--bind=0.0.0.0"], ["--fd", "3"], ["-u", "/tmp/s"], ["-e", "tcp:80"]):
        with pytest.raises(ServeRefused, match="the supervisor opens the listening socket"):
            plan_from(["--workers", "1", "--", *option], {}, cores=1)


# --- the command ------------------------------------------------------------------------------------------


def _serve(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *argv],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"DATABASE_URL": POSTGRES}, "need REDIS_URL"), ({"REDIS_URL": REDIS}, "SQLite")],
    ids=["no-redis", "sqlite"],
)
def test_the_command_refuses_two_workers_before_listening(settings: dict[str, str], words: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "WEB_WORKERS"}}
    port = _free_port()
    result = _serve("--port", str(port), "--workers", "2", env={**env, **settings})
    assert result.returncode == EXIT_REFUSED
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not _listening(port)


def test_each_worker_gets_a_socket_of_its_own_on_one_port() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == 3 and len(ports) == 1
        supervisor = Supervisor(Plan("127.0.0.1", ports.pop(), 3), sockets)
        fds = {supervisor.socket_for(worker).fileno() for worker in supervisor.workers}
        assert len(fds) == 3
        assert all(
            f"--fd {supervisor.socket_for(w).fileno()}" in " ".join(supervisor.command(w))
            for w in supervisor.workers
        )
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_is_a_failure_to_serve() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--port", str(port), "--workers", "1", env=dict(os.environ))
    assert result.returncode == EXIT_FAILED
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_workers_that_keep_dying_at_start_are_restarted_with_a_growing_back_off_then_given_up() -> None:
    # ``false`` stands in for the interpreter: every worker exits at once with status 1.
    false = shutil.which("false")
    script = (
        "import sys\n"
        "from fusionroom import serve\n"
        "serve.BACKOFF_FIRST_S = 0.1\n"
        "sockets = serve.listening_sockets('127.0.0.1', 0)\n"
        f"sys.exit(serve.Supervisor(serve.Plan('127.0.0.1', 0, 1), sockets, python={false!r}).run())\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == EXIT_FAILED
    assert "giving up" in result.stderr
    delays = [float(d) for d in re.findall(r"worker 0 restarts in ([\d.]+) s", result.stderr)]
    assert delays == [0.1, 0.2, 0.4, 0.8]
    assert time.monotonic() - started >= sum(delays)
    assert result.stderr.count("worker 0 started") == 5


# --- real workers on PostgreSQL + Redis --------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def workers(self) -> list[int]:
        return processes.children(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_for_workers(served: Served, count: int, *, besides: Collection[int] = ()) -> list[int]:
    """Wait until ``count`` workers other than ``besides`` run, and every worker accepts connections."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        pids = [pid for pid in served.workers() if pid not in besides]
        if len(pids) >= count:
            break
        if served.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{count} workers did not start:\n{served.log()}")
        time.sleep(0.1)
    processes.wait_accepting(served.workers(), served.port, timeout=START_TIMEOUT_S)
    return served.workers()


@pytest.fixture
def served(django_db_setup: None, tmp_path: Path) -> Iterator[Served]:
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WEB_WORKERS", None)
    log_path = tmp_path / "serve.log"
    for _attempt in range(3):
        port = _free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*SERVE, "--port", str(port), "--workers", "2", "--", "--access-log", os.devnull],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _listens_or_exits(process, log_path):
            break  # the port was still free
    served = Served(process=process, port=port, log_path=log_path)
    try:
        _wait_for_workers(served, 2)
        yield served
    finally:
        workers = served.workers()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            for pid in workers:
                os.kill(pid, signal.SIGKILL)


def _listens_or_exits(process: subprocess.Popen[bytes], log_path: Path) -> bool:
    """True once the supervisor says it serves; False if it exited first (the port was taken meanwhile)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "serve: serving http://" in log_path.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"the supervisor said nothing within {START_TIMEOUT_S} s:\n{log_path.read_text()}")


def _get_on(conn: socket.socket) -> str:
    """The status line of GET /accounts/login/ sent over an open connection."""
    conn.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    conn.settimeout(30)
    return conn.makefile("rb").readline().decode().strip()


scale_out = pytest.mark.skipif(not SCALE_OUT, reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL")


@pytest.mark.postgres
@pytest.mark.redis
@scale_out
@pytest.mark.timeout(180)
def test_two_workers_share_one_port_and_each_serves_the_connections_it_accepts(served: Served) -> None:
    workers = served.workers()
    assert len(workers) == 2
    held: list[socket.socket] = []
    try:
        # Connections opened one at a time are accepted by both workers.
        for _ in range(CONNECTIONS):
            held.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
            time.sleep(0.02)
        deadline = time.monotonic() + 30
        while sum((counts := processes.connections_by_pid(workers, served.port)).values()) < CONNECTIONS:
            assert time.monotonic() < deadline, f"not every connection was accepted: {counts}"
            time.sleep(0.1)
        # Each worker has a socket of its own on the port: the kernel spreads the connections over both,
        # where one shared socket gave most of them to the worker that woke first.
        assert min(counts.values()) >= CONNECTIONS // 4, counts
        # A request on every connection is answered, whichever worker holds it.
        assert {_get_on(conn) for conn in held} == {"HTTP/1.1 200 OK"}
    finally:
        for conn in held:
            conn.close()


@pytest.mark.postgres
@pytest.mark.redis
@scale_out
@pytest.mark.timeout(180)
def test_a_killed_worker_is_replaced_and_the_new_one_serves(served: Served) -> None:
    killed, survivor = served.workers()
    os.kill(killed, signal.SIGKILL)
    workers = _wait_for_workers(served, 1, besides={killed, survivor})
    assert survivor in workers and killed not in workers and len(workers) == 2
    assert re.search(rf"worker \d \(pid {killed}\) was killed by SIGKILL", served.log())
    assert served.process.poll() is None


@pytest.mark.postgres
@pytest.mark.redis
@scale_out
@pytest.mark.timeout(180)
def test_sigterm_stops_every_worker_and_frees_the_port(served: Served) -> None:
    workers = served.workers()
    served.process.send_signal(signal.SIGTERM)
    # Sooner than the supervisor's own deadline, after which it would kill them: they heard the signal.
    assert served.process.wait(timeout=STOP_TIMEOUT_S - 5) == 0
    assert "did not stop" not in served.log()
    # The supervisor waited for them: they are gone, not orphaned.
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not _listening(served.port)
    assert "SIGTERM: stopping 2 worker(s)" in served.log()
