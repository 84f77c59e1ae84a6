"""Serve the app on every core: one port, one Daphne process per core listening on it.

``python -m fusionroom.serve [--host 127.0.0.1] [--port 8000] [--workers N] [-- DAPHNE OPTIONS]``

The supervisor binds ``HOST:PORT`` itself and starts N ``daphne --fd <fd> fusionroom.asgi:application``
processes, each inheriting a listening socket (Daphne adopts it as Twisted's ``fd:`` endpoint). Where the
system has ``SO_REUSEPORT`` (Linux), each worker has a socket of its own on the same port and the kernel
spreads new connections evenly over them; one socket shared by all would go to whichever process accepts
first, and a burst of connections to the one that wakes first (160 of 200 sockets to one of two workers,
measured). Elsewhere the workers share one socket. It forwards SIGINT and SIGTERM to the workers and waits
for them; a worker that dies on its own is started again, after a back-off that doubles while it keeps dying
young, and the supervisor gives up (stopping the others, exit status 1) after ``GIVE_UP_AFTER`` such crashes
in a row. It keeps the sockets open all along, so connections made while a worker restarts wait in its
socket's backlog instead of being refused.

Workers: ``--workers``, else ``WEB_WORKERS``, else the number of cores this process may run on. More than one
needs a database every process can share and a channel layer that crosses processes: PostgreSQL (or another
server database) in ``DATABASE_URL`` and Redis in ``REDIS_URL``; anything else is refused before any process
starts. Migrations and ``collectstatic`` are not run here: do them once before (``make run`` does).
Options after ``--`` go to every Daphne (``-- --proxy-headers``), except those that choose where to listen.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

APPLICATION = "fusionroom.asgi:application"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
BACKLOG = 1024
# A worker that lived less than this died young: its restart waits, and too many in a row end the supervisor.
STABLE_AFTER_S = 30.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
GIVE_UP_AFTER = 5
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1
# Daphne options that choose the listening socket: the supervisor's job, so refused after "--".
BINDING_OPTIONS = ("-b", "--bind", "-p", "--port", "-u", "--unix-socket", "--fd", "-e", "--endpoint")
# 2: refused as asked (like a usage error); 1: could not listen, or the workers kept dying.
EXIT_REFUSED = 2
EXIT_FAILED = 1


class ServeRefused(Exception):
    """The command cannot serve as asked; the message says why and what to do."""


class CannotListen(Exception):
    """The listening socket could not be opened (an address in use, or not an IPv4 one)."""


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    workers: int
    daphne_args: tuple[str, ...] = ()


def core_count() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def database_is_sqlite(database_url: str) -> bool:
    """Whether ``DATABASE_URL`` (empty: the settings' default file) names an SQLite database."""
    if not database_url:
        return True
    import dj_database_url

    engine = dj_database_url.parse(database_url)["ENGINE"]
    return "sqlite" in engine or "spatialite" in engine


def plan_from(argv: Sequence[str], environ: Mapping[str, str], cores: int) -> Plan:
    """What to serve, from the command line and the environment; ``ServeRefused`` when it cannot be served."""
    argv = list(argv)
    daphne_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, daphne_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m fusionroom.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--workers",
        type=int,
        help="Daphne processes (default: WEB_WORKERS, else one per core)",
    )
    args = parser.parse_args(argv)
    if args.workers is not None:
        workers, source = args.workers, "--workers"
    elif environ.get("WEB_WORKERS", "").strip():
        raw = environ["WEB_WORKERS"].strip()
        try:
            workers = int(raw)
        except ValueError:
            raise ServeRefused(f"WEB_WORKERS must be a whole number, got {raw!r}") from None
        source = "WEB_WORKERS"
    else:
        workers, source = cores, "one per core"
    if workers < 1:
        raise ServeRefused(f"{source} must be at least 1, got {workers}")
    if not 0 <= args.port <= 65535:
        raise ServeRefused(f"--port must be between 0 and 65535, got {args.port}")
    for option in daphne_args:
        if option.split("=", 1)[0] in BINDING_OPTIONS:
            raise ServeRefused(f"{option}: the supervisor opens the listening socket; use --host and --port")
    if workers > 1:
        if not environ.get("REDIS_URL", "").strip():
            raise ServeRefused(
                f"{workers} workers ({source}) need REDIS_URL: without it each process has its own in-memory "
                "channel layer, so a browser on one process would not see a run on another. Set REDIS_URL "
                "(and DATABASE_URL to PostgreSQL), or run one worker (--workers 1)."
            )
        if database_is_sqlite(environ.get("DATABASE_URL", "").strip()):
            raise ServeRefused(
                f"{workers} workers ({source}) need a database server in DATABASE_URL (PostgreSQL): SQLite "
                "takes one writer at a time, and the processes would queue on its lock. Set DATABASE_URL to "
                "PostgreSQL, or run one worker (--workers 1)."
            )
    return Plan(host=args.host, port=args.port, workers=workers, daphne_args=tuple(daphne_args))


def listening_sockets(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """Listening TCP sockets on ``host:port`` for the workers (IPv4: Daphne adopts AF_INET): ``count`` of
    them sharing the port through ``SO_REUSEPORT`` where there is such a thing, else one for all."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(
            f"cannot listen on {host!r}: {exc.strerror} (Daphne's --fd takes IPv4 sockets: use an IPv4 "
            "address such as 127.0.0.1 or 0.0.0.0)"
        ) from None
    reuse_port = count > 1 and hasattr(socket, "SO_REUSEPORT")
    address = infos[0][4]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            # A restart must not wait out the previous run's connections in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            # Port 0 asks for any free port: the others take the one the first was given.
            address = sock.getsockname()
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


PR_SET_PDEATHSIG = 1


def _die_with(supervisor_pid: int) -> Callable[[], None]:
    """Run in a worker before exec: it gets SIGTERM when the supervisor dies, even by SIGKILL, so no orphan
    keeps serving the port (Linux; elsewhere nothing)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor_pid:  # it died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


@dataclass
class Worker:
    slot: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    young_deaths: int = 0
    restart_at: float = 0.0


class Supervisor:
    """N Daphne processes on inherited sockets: started, restarted when they die, stopped on a signal."""

    def __init__(self, plan: Plan, sockets: Sequence[socket.socket], *, python: str = sys.executable) -> None:
        self.plan = plan
        self.sockets = list(sockets)
        self.python = python
        self.workers = [Worker(slot=slot) for slot in range(plan.workers)]
        self._signal: int | None = None
        self._child_setup = _die_with(os.getpid())

    def socket_for(self, worker: Worker) -> socket.socket:
        """The worker's own socket (a restarted worker takes its predecessor's), or the one shared by all."""
        return self.sockets[worker.slot % len(self.sockets)]

    def command(self, worker: Worker) -> list[str]:
        fd = str(self.socket_for(worker).fileno())
        return [self.python, "-m", "daphne", "--fd", fd, *self.plan.daphne_args, APPLICATION]

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        host, port = self.sockets[0].getsockname()[:2]
        _say(f"serving http://{host}:{port}/ with {self.plan.workers} Daphne worker(s)")
        for worker in self.workers:
            self._start(worker)
        status = 0
        while self._signal is None:
            failed = self._tend(time.monotonic())
            if failed:
                status = EXIT_FAILED
                break
            time.sleep(POLL_S)
        self._stop(self._signal)
        return status

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal = signum

    def _start(self, worker: Worker) -> None:
        # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it once.
        worker.process = subprocess.Popen(  # noqa: S603 - our own interpreter, daphne and fixed arguments
            self.command(worker),
            pass_fds=(self.socket_for(worker).fileno(),),
            process_group=0,
            # preexec_fn is unsafe only beside threads, and the supervisor runs none.
            preexec_fn=self._child_setup,
        )
        worker.started_at = time.monotonic()
        _say(f"worker {worker.slot} started (pid {worker.process.pid})")

    def _tend(self, now: float) -> bool:
        """Restart the workers that died and are due; True when one keeps dying young (give up)."""
        for worker in self.workers:
            if worker.process is None:
                if now >= worker.restart_at:
                    self._start(worker)
                continue
            code = worker.process.poll()
            if code is None:
                continue
            lived = now - worker.started_at
            _say(f"worker {worker.slot} (pid {worker.process.pid}) {_exit_words(code)} after {lived:.1f} s")
            worker.process = None
            worker.young_deaths = worker.young_deaths + 1 if lived < STABLE_AFTER_S else 0
            if worker.young_deaths >= GIVE_UP_AFTER:
                _say(
                    f"worker {worker.slot} died {worker.young_deaths} times within {STABLE_AFTER_S:.0f} s of "
                    "starting: giving up"
                )
                return True
            delay = min(BACKOFF_FIRST_S * 2 ** max(worker.young_deaths - 1, 0), BACKOFF_MAX_S)
            worker.restart_at = now + delay
            _say(f"worker {worker.slot} restarts in {delay:.1f} s")
        return False

    def _stop(self, signum: int | None) -> None:
        """Pass on the signal received (SIGTERM when giving up); kill what outlives ``STOP_TIMEOUT_S``."""
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        reason = f"{signal.Signals(signum).name}: " if signum else ""
        _say(f"{reason}stopping {len(running)} worker(s)")
        for process in running:
            process.send_signal(signum or signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                _say(f"pid {process.pid} did not stop within {STOP_TIMEOUT_S:.0f} s: killed")
                process.kill()
                process.wait()
        for sock in self.sockets:
            sock.close()


def _exit_words(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _say(message: str) -> None:
    print(f"serve: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        plan = plan_from(argv, os.environ, core_count())
    except ServeRefused as exc:
        _say(f"refused: {exc}")
        return EXIT_REFUSED
    try:
        sockets = listening_sockets(plan.host, plan.port, plan.workers)
    except CannotListen as exc:
        _say(str(exc))
        return EXIT_FAILED
    return Supervisor(plan, sockets).run()


if __name__ == "__main__":
    sys.exit(main())
