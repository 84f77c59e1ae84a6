"""Fixtures of the API tests.

- In-process: ``api`` is an ``httpx.AsyncClient`` on the ASGI app (the test's own event loop, so the loopback
  ``fake_upstream`` and settings overrides apply); ``oai`` is the official ``AsyncOpenAI`` client on it.
- Real server: ``live_api`` runs Daphne in a subprocess on the test database (``tests/live_server.py``), with
  OpenRouter pointed at a loopback fake upstream (``live_upstream``) and demo models without delay;
  ``live_openai`` is the official synchronous ``OpenAI`` client talking to it over TCP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from openai import AsyncOpenAI, OpenAI

from apps.accounts.api_keys import api_key_create
from apps.api.ratelimit import _shared, limiter
from apps.providers.registry import reset_gateway
from tests.fakes.upstream import FakeUpstream
from tests.live_server import LiveServer, live_server_session, live_server_start

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


@pytest.fixture(autouse=True)
async def _shared_limiter_closed() -> AsyncIterator[None]:
    """With REDIS_URL set the API counts in Redis, over a client of the test's own loop: close it after."""
    yield
    for shared in _shared.values():
        await shared.aclose()


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


def _caller(username: str) -> Caller:
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


@pytest.fixture(scope="session")
def _live_api_process(
    django_db_setup: None, live_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server_start(
        settings_module="fusionroom.settings",
        ready_path="/api/v1/models",
        log_dir=tmp_path_factory.mktemp("api-daphne"),
        env={
            "DEMO_MODEL_DELAY": "0",
            "OPENROUTER_API_KEY": UPSTREAM_KEY,
            "OPENROUTER_BASE_URL": live_upstream.base_url,
            "PROVIDER_MAX_RETRIES": "0",
            "API_RATE_LIMIT_PER_MINUTE": str(LIVE_RATE_LIMIT),
        },
    ) as server:
        yield server


@pytest.fixture
def live_api(
    request: pytest.FixtureRequest,
    _live_api_process: LiveServer,
    transactional_db: None,
) -> Iterator[LiveServer]:
    """The running server for one test; rows the test writes are committed, so the server sees them."""
    with live_server_session(request, _live_api_process) as server:
        yield server


@pytest.fixture
def live_caller(live_api: LiveServer) -> Caller:
    return _caller("carol")


@pytest.fixture
def live_openai(live_api: LiveServer, live_caller: Caller) -> Iterator[OpenAI]:
    client = OpenAI(base_url=live_api.api_url, api_key=live_caller.key, max_retries=0, timeout=60)
    yield client
    client.close()
