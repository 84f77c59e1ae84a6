"""Pytest fixtures around the fake upstream (registered in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from apps.providers.http import shared_client_close
from tests.fakes.upstream import FakeUpstream


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
