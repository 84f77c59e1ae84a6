"""Fixtures of the API tests.

- In-process: ``api`` is an ``httpx.AsyncClient`` on the ASGI app (the test's own event loop, so the loopback
  ``fake_upstream`` and settings overrides apply); ``oai`` is the official ``AsyncOpenAI`` client on it.
- Real server: ``live_api`` runs Daphne in a subprocess on the test database, with OpenRouter pointed at a
  loopback fake upstream (``live_upstream``) and demo models without delay; ``live_openai`` is the official
  synchronous ``OpenAI`` client talking to it over TCP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from openai import AsyncOpenAI, OpenAI

from apps.accounts.api_keys import api_key_create
from apps.api.ratelimit import limiter
from apps.panels.models import Panel, PanelMember
from apps.panels.presets import sync_preset_rows
from apps.providers.registry import reset_gateway
from tests.browser.conftest import _database_url, _free_port, _serving, _stop
from tests.fakes.upstream import FakeUpstream

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
LIVE_RATE_LIMIT = 30
UPSTREAM_KEY = "sk-or-test-upstream"


@dataclass(frozen=True)
class Caller:
    user: User
    key: str


@pytest.fixture(autouse=True)
def _fresh_limits_and_gateway() -> Iterator[None]:
    limiter.reset()
    reset_gateway()
    yield
    limiter.reset()
    reset_gateway()


@pytest.fixture
def demo_settings(settings: Any) -> Any:
    """No provider key: the default panel is the offline demo one; demo models stream without delay."""
    settings.OPENROUTER_API_KEY = ""
    settings.DEMO_MODEL_DELAY = 0
    settings.CHAT_FLUSH_SECONDS = 0.01
    return settings


@pytest.fixture
async def upstream(fake_upstream: FakeUpstream, demo_settings: Any) -> FakeUpstream:
    """OpenRouter is the loopback fake upstream (in this test's loop), with a key and no retries."""
    demo_settings.OPENROUTER_API_KEY = UPSTREAM_KEY
    demo_settings.OPENROUTER_BASE_URL = fake_upstream.base_url
    demo_settings.PROVIDER_MAX_RETRIES = 0
    return fake_upstream


def _presets_restore() -> None:
    # Transactional tests empty every table afterwards, the preset panels (migration data) included; putting
    # them back is cheaper and order-independent, unlike serialized rollback, which clashes with content
    # types that other transactional tests let post_migrate recreate.
    if not Panel.objects.filter(owner=None).exists():
        sync_preset_rows(Panel, PanelMember)


def _caller(username: str) -> Caller:
    _presets_restore()
    user = User.objects.create_user(username)  # no password: hashing one is the slowest part of a test
    _, raw = api_key_create(user=user, name="tests")
    return Caller(user=user, key=raw)


@pytest.fixture
async def alice(transactional_db: None) -> Caller:
    return await sync_to_async(_caller)("alice")


@pytest.fixture
async def bob(transactional_db: None) -> Caller:
    return await sync_to_async(_caller)("bob")


@pytest.fixture
async def api(demo_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    from fusionroom.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api/v1") as client:
        yield client


@pytest.fixture
async def oai(api: httpx.AsyncClient, alice: Caller) -> AsyncOpenAI:
    return AsyncOpenAI(base_url="http://localhost/api/v1", api_key=alice.key, http_client=api, max_retries=0)


def auth(caller: Caller) -> dict[str, str]:
    return {"Authorization": f"Bearer {caller.key}"}


# --- the real server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(require_key=UPSTREAM_KEY)
    upstream.start_in_thread()
    yield upstream
    upstream.stop()


@dataclass(frozen=True)
class LiveApi:
    url: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v1"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def _live_api_process(
    django_db_setup: None, live_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    env = {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
        "DATABASE_URL": _database_url(),
        "DEMO_MODEL_DELAY": "0",
        "OPENROUTER_API_KEY": UPSTREAM_KEY,
        "OPENROUTER_BASE_URL": live_upstream.base_url,
        "PROVIDER_MAX_RETRIES": "0",
        "API_RATE_LIMIT_PER_MINUTE": str(LIVE_RATE_LIMIT),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path_factory.mktemp("api-daphne") / "daphne.log"
    for _attempt in range(3):
        port = _free_port()
        server = LiveApi(url=f"http://127.0.0.1:{port}", log_path=log_path)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "fusionroom.asgi:application",
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _serving(process, f"{server.url}/api/v1/models"):
            break
    else:
        raise RuntimeError(f"Daphne did not start:\n{log_path.read_text(errors='replace')}")
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture
def live_api(
    request: pytest.FixtureRequest,
    _live_api_process: LiveApi,
    transactional_db: None,
) -> Iterator[LiveApi]:
    """The running server for one test; rows the test writes are committed, so the server sees them."""
    size = _live_api_process.log_path.stat().st_size
    yield _live_api_process
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        with _live_api_process.log_path.open("rb") as log:
            log.seek(size)
            print(f"--- Daphne printed during this test ---\n{log.read().decode(errors='replace')}")


@pytest.fixture
def live_caller(live_api: LiveApi) -> Caller:
    return _caller("carol")


@pytest.fixture
def live_openai(live_api: LiveApi, live_caller: Caller) -> Iterator[OpenAI]:
    client = OpenAI(base_url=live_api.base_url, api_key=live_caller.key, max_retries=0, timeout=60)
    yield client
    client.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
