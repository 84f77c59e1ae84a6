"""Daphne in a subprocess on the test database: the live server of the browser and live API tests.

Registered as a pytest plugin in ``tests/conftest.py``.

- ``live_server_start(...)``: a context manager that runs the full ASGI app under Daphne on a free 127.0.0.1
  port, against the test database pytest-django has just created (passed as ``DATABASE_URL``, so the server
  opens the very file or database the tests write to), and stops it when the context ends. A folder's session
  fixture starts one with the settings module and environment it needs.
- ``live_server_session(request, server)``: wraps one test's use of a running server; when the test fails, it
  prints what the server printed during the test (its tracebacks live in another process).

Tests that use a live server must be transactional: both processes only see committed rows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 30.0
START_ATTEMPTS = 3


@dataclass(frozen=True)
class LiveServer:
    """A running Daphne: ``url`` (http://127.0.0.1:<port>), ``ws_url`` and the file its output goes to."""

    url: str
    ws_url: str
    log_path: Path

    @property
    def api_url(self) -> str:
        """The base URL of the OpenAI-compatible API."""
        return f"{self.url}/api/v1"

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


def database_url() -> str:
    """A DATABASE_URL for the test database that pytest-django has just created."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(settings['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        port = f":{settings['PORT']}" if settings.get("PORT") else ""
        return f"postgres://{auth}{settings.get('HOST') or ''}{port}/{quote(settings['NAME'], safe='')}"
    raise RuntimeError(f"the live server does not know how to share a {connection.vendor} test database")


@contextmanager
def live_server_start(
    *,
    settings_module: str,
    ready_path: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Daphne serving ``settings_module``'s app until the context ends; ready once ``ready_path`` answers.

    Call it from a session fixture that depends on ``django_db_setup`` (the database must exist first).
    ``env`` adds to or overrides the server's environment (settings read from it, such as DEMO_MODEL_DELAY).
    """
    server_env = {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    # The test process may allow sync ORM calls under a running loop (Playwright's); the server must not.
    server_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = log_dir / "daphne.log"
    # A free port can be taken between asking for it and Daphne binding it: then try another one.
    for _attempt in range(START_ATTEMPTS):
        port = _free_port()
        server = LiveServer(
            url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}", log_path=log_path
        )
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command, "--access-log", os.devnull, "fusionroom.asgi:application"],
                cwd=PROJECT_ROOT,
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _serving(process, f"{server.url}{ready_path}"):
            break
    else:
        raise RuntimeError(f"Daphne did not start:\n{log_path.read_text(errors='replace')}")
    try:
        yield server
    finally:
        _stop(process)


@contextmanager
def live_server_session(request: pytest.FixtureRequest, server: LiveServer) -> Iterator[LiveServer]:
    """One test's use of ``server``: if the test fails, print what the server printed while it ran."""
    offset = server.log_size()
    yield server
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- Daphne printed during this test ---\n{server.log_since(offset)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Fixtures learn in their teardown whether the test itself failed.
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serving(process: subprocess.Popen[bytes], url: str) -> bool:
    """Wait until ``url`` answers (True) or the process exits (False: most likely the port was taken)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers; what it answers is for the tests to judge
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Daphne did not answer {url} within {SERVER_START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
