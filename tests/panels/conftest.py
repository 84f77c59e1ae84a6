"""Fixtures for the panels tests: two users, their logged-in clients, and the catalog offline or live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.providers.catalog import reset_catalog
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(autouse=True)
def _offline(settings: Any) -> Iterator[None]:
    """No OpenRouter key and no endpoints unless a test sets them; a fresh catalog either way."""
    settings.OPENROUTER_API_KEY = ""
    settings.FUSIONROOM_ENDPOINTS = {}
    settings.FUSIONROOM_ENDPOINT_KEYS = {}
    reset_catalog()
    yield
    reset_catalog()


# Users without a password (clients log in with force_login): password hashing would dominate the run time.
@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="bob")


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def openrouter_model(
    model_id: str, *, prompt: str | None, completion: str | None, context: int | None = 100_000
) -> dict[str, Any]:
    """One entry of OpenRouter's ``GET /models`` (prices are USD-per-token strings)."""
    return {
        "id": model_id,
        "name": f"Test: {model_id}",
        "context_length": context,
        "pricing": {"prompt": prompt, "completion": completion},
        "supported_parameters": ["max_tokens", "temperature", "response_format"],
    }


@pytest.fixture
def live_openrouter(settings: Any, fake_upstream_thread: FakeUpstream) -> FakeUpstream:
    """OpenRouter reached at a loopback fake (key set): its ``models`` list is the live catalog."""
    settings.OPENROUTER_API_KEY = "sk-or-test"
    settings.OPENROUTER_BASE_URL = fake_upstream_thread.base_url
    return fake_upstream_thread
