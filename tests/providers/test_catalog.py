"""The catalog: the shipped snapshot, the live /models from the loopback server, fallback, search."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from apps.panels.presets import PRESETS
from apps.providers.catalog import (
    SNAPSHOT_PATH,
    CatalogConfig,
    aget_catalog,
    get_catalog,
    price_parse,
    reset_catalog,
    snapshot_load,
)
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    reset_catalog()
    yield
    reset_catalog()


def _live(upstream: FakeUpstream, **extra: object) -> CatalogConfig:
    return CatalogConfig(base_url=upstream.base_url, api_key="sk-or-test", **extra)  # type: ignore[arg-type]


def test_the_snapshot_names_its_source_and_date_and_every_preset_model() -> None:
    raw = json.loads(SNAPSHOT_PATH.read_text())
    assert raw["source"] and raw["fetched_at"] and raw["note"]
    snapshot = snapshot_load()
    preset_models = {
        model
        for spec in PRESETS.values()
        for model in [*spec["seats"], spec["judge"], spec["writer"]]
        if not model.startswith("demo/")
    }
    assert preset_models <= {info.id for info in snapshot.models}
    assert not snapshot.is_live


def test_snapshot_prices_are_per_token_floats_and_unsourced_ones_stay_unknown() -> None:
    snapshot = snapshot_load()
    opus = snapshot.get("anthropic/claude-opus-4.8")
    assert opus is not None and opus.prompt_price == pytest.approx(5e-6) and opus.completion_price == 2.5e-5
    assert opus.supports_structured_output
    for unpriced in ("~anthropic/claude-opus-latest", "~openai/gpt-latest", "moonshotai/kimi-k2.6"):
        info = snapshot.get(unpriced)
        assert info is not None and info.prompt_price is None and info.completion_price is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.000005", 5e-6),
        ("0", 0.0),
        (0.5, 0.5),
        ("-1", None),
        ("not a number", None),
        ("", None),
        (None, None),
    ],
)
def test_prices_parse_or_stay_unknown(raw: str | float | None, expected: float | None) -> None:
    assert price_parse(raw) == expected


def test_without_a_key_the_catalog_is_the_snapshot_plus_demo_models(
    fake_upstream_thread: FakeUpstream,
) -> None:
    catalog = get_catalog(CatalogConfig(base_url=fake_upstream_thread.base_url, api_key=""))

    assert not catalog.is_live
    assert catalog.source == snapshot_load().source and catalog.fetched_at == snapshot_load().fetched_at
    assert catalog.get("deepseek/deepseek-v4-pro") is not None
    atlas = catalog.get("demo/atlas")
    assert atlas is not None and atlas.is_demo and atlas.provider == "demo"
    assert atlas.name == "Atlas (demo)" and atlas.prompt_price == 0.0
    assert fake_upstream_thread.requests == []


def test_with_a_key_the_live_catalog_is_fetched_once_and_cached(fake_upstream_thread: FakeUpstream) -> None:
    config = _live(fake_upstream_thread)
    catalog = get_catalog(config)
    again = get_catalog(config)

    assert catalog is again and catalog.is_live and catalog.error is None
    assert fake_upstream_thread.base_url in catalog.source
    fast = catalog.get("fake/fast")
    assert fast is not None and fast.prompt_price == 1e-6 and fast.completion_price == 2e-6
    assert fast.context_length == 32768 and fast.supports_structured_output
    unpriced = catalog.get("fake/unpriced")
    assert unpriced is not None and unpriced.prompt_price is None and unpriced.completion_price is None
    assert catalog.get("anthropic/claude-opus-4.8") is None  # the live list replaces the snapshot
    assert catalog.get("demo/judge") is not None
    (request,) = fake_upstream_thread.requests
    assert request.path.endswith("/models")
    assert request.headers["authorization"] == "Bearer sk-or-test"


async def test_the_async_catalog_fetches_with_the_shared_client(fake_upstream: FakeUpstream) -> None:
    catalog = await aget_catalog(_live(fake_upstream))

    assert catalog.is_live and catalog.get("fake/fast") is not None
    assert len(fake_upstream.requests) == 1


def test_a_failed_fetch_falls_back_to_the_snapshot_and_says_why(fake_upstream_thread: FakeUpstream) -> None:
    fake_upstream_thread.models_status = 503
    catalog = get_catalog(_live(fake_upstream_thread))

    assert not catalog.is_live
    assert catalog.error is not None and "503" in catalog.error
    assert catalog.get("anthropic/claude-opus-4.8") is not None


def test_a_malformed_models_reply_falls_back_and_bad_entries_are_skipped(
    fake_upstream_thread: FakeUpstream,
) -> None:
    fake_upstream_thread.models = [{"id": "ok/model", "name": "OK"}, {"name": "no id"}, "not an object"]  # type: ignore[list-item]
    catalog = get_catalog(_live(fake_upstream_thread))
    assert catalog.is_live and catalog.get("ok/model") is not None
    assert [m.id for m in catalog.models if m.provider == "openrouter"] == ["ok/model"]

    reset_catalog()
    fake_upstream_thread.models = {"unexpected": "shape"}  # type: ignore[assignment]
    catalog = get_catalog(_live(fake_upstream_thread))
    assert not catalog.is_live and catalog.error is not None


def test_endpoint_models_are_listed_with_unknown_prices(fake_upstream_thread: FakeUpstream) -> None:
    config = CatalogConfig(
        endpoints=(("ollama", fake_upstream_thread.base_url), ("down", "http://127.0.0.1:9/v1"))
    )
    catalog = get_catalog(config)

    local = catalog.get("ollama/fake/fast")
    assert local is not None and local.provider == "ollama"
    assert local.prompt_price is None and local.completion_price is None
    assert "down" in catalog.endpoint_errors
    assert catalog.get("demo/atlas") is not None


async def test_the_sync_catalog_never_blocks_a_running_loop(fake_upstream_thread: FakeUpstream) -> None:
    catalog = get_catalog(_live(fake_upstream_thread))

    assert not catalog.is_live
    assert fake_upstream_thread.requests == []


def test_search_ranks_id_and_name_matches_over_vendor_matches() -> None:
    catalog = get_catalog(CatalogConfig())

    assert [m.id for m in catalog.search("deepseek v4 pro")] == ["deepseek/deepseek-v4-pro"]
    assert [m.id for m in catalog.search("opus")] == [
        "~anthropic/claude-opus-latest",
        "anthropic/claude-opus-4.8",
        "anthropic/claude-opus-4.7",
    ]
    assert catalog.search("claude-opus-4")[0].id == "anthropic/claude-opus-4.8"
    assert [m.id for m in catalog.search("atlas")] == ["demo/atlas"]
    assert [m.id for m in catalog.search("Gemini 3 Flash")] == ["google/gemini-3-flash-preview"]
    assert {m.vendor for m in catalog.search("anthropic", limit=50)} == {"anthropic"}
    assert len(catalog.search("", limit=4)) == 4
    assert len(catalog.search("a", limit=3)) == 3
    assert catalog.search("no such model anywhere") == []


def test_an_exact_id_comes_first() -> None:
    catalog = get_catalog(CatalogConfig())
    assert catalog.search("openai/gpt-5.4")[0].id == "openai/gpt-5.4"


def test_the_catalog_without_network_is_assembled_once_per_configuration() -> None:
    from apps.providers.catalog import cached_catalog

    # Labels and prices read on the event loop come from it, several times per turn: indexing a few hundred
    # models each time was a visible share of a run's CPU.
    config = CatalogConfig()
    first = cached_catalog(config)
    assert cached_catalog(config) is first
    assert cached_catalog(CatalogConfig(api_key="sk-or-other")) is not first
    reset_catalog()
    assert cached_catalog(config) is not first
