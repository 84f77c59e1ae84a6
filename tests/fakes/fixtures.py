"""Pytest fixtures around the fake upstream (registered in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from apps.providers.http import shared_client_close
from tests.fakes.upstream import FakeUpstream

FAKE_OPENROUTER_KEY = "sk-or-v1-fake-test-key"


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    """A fake OpenRouter served from the test's own event loop; ``fake_upstream.base_url`` is its base URL."""
    async with FakeUpstream() as upstream:
        yield upstream
        # Close the loop's shared client first, so no pooled connection outlives the server.
        await shared_client_close()


@pytest.fixture
def fake_upstream_thread() -> Iterator[FakeUpstream]:
    """The same server in a thread of its own: for sync tests, Django's test client and subprocesses."""
    upstream = FakeUpstream()
    upstream.start_in_thread()
    yield upstream
    upstream.stop()


@pytest.fixture
def fake_openrouter(settings: Any, fake_upstream_thread: FakeUpstream) -> Iterator[FakeUpstream]:
    """Settings that send OpenRouter traffic to the fake (with a key); fresh gateway and catalog caches."""
    from apps.providers.catalog import reset_catalog
    from apps.providers.registry import reset_gateway

    settings.OPENROUTER_API_KEY = FAKE_OPENROUTER_KEY
    settings.OPENROUTER_BASE_URL = fake_upstream_thread.base_url
    reset_gateway()
    reset_catalog()
    yield fake_upstream_thread
    reset_gateway()
    reset_catalog()
