"""The model catalog: id, display name, context length and prices of every model we can route to.

With ``OPENROUTER_API_KEY`` set it comes from OpenRouter's ``GET /models`` (cached); without a key, from the
snapshot shipped in ``apps/providers/data/openrouter_models.json`` (its date and source are in the file).
Prices are USD per token; ``None`` means unknown and is shown as unknown, never guessed. The demo models are
always listed, and each configured endpoint's models when its ``GET /models`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

logger = logging.getLogger(__name__)

SNAPSHOT_PATH = Path(__file__).parent / "data" / "openrouter_models.json"
# A failed live fetch is retried after this long, not after the full cache period, nor on every page view.
FAILURE_RETRY_SECONDS = 60.0
FETCH_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=5.0, pool=5.0)


class ModelInfo(BaseModel):
    id: str
    name: str
    context_length: int | None = None
    # USD per token (OpenRouter's pricing.prompt / pricing.completion); None: unknown.
    prompt_price: float | None = None
    completion_price: float | None = None
    supported_parameters: list[str] = []
    # "openrouter", "demo" or the name of a configured endpoint (e.g. "ollama").
    provider: str = "openrouter"
    is_demo: bool = False

    @property
    def vendor(self) -> str:
        return self.id.lstrip("~").split("/", 1)[0]

    @property
    def supports_structured_output(self) -> bool:
        return (
            "response_format" in self.supported_parameters
            or "structured_outputs" in self.supported_parameters
        )


# The offline demo models (``apps/providers/demo.py``), always listed: free; only the judge takes a schema.
DEMO_MODELS: list[ModelInfo] = [
    ModelInfo(
        id=model_id,
        name=name,
        context_length=32_768,
        prompt_price=0.0,
        completion_price=0.0,
        supported_parameters=parameters,
        provider="demo",
        is_demo=True,
    )
    for model_id, name, parameters in (
        ("demo/atlas", "Atlas (demo)", ["temperature", "max_tokens"]),
        ("demo/birch", "Birch (demo)", ["temperature", "max_tokens"]),
        ("demo/cedar", "Cedar (demo)", ["temperature", "max_tokens"]),
        (
            "demo/judge",
            "Judge (demo)",
            ["temperature", "max_tokens", "response_format", "structured_outputs"],
        ),
        ("demo/writer", "Writer (demo)", ["temperature", "max_tokens"]),
    )
]


# --- OpenRouter's /models, validated ------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _WirePricing(_Wire):
    prompt: str | float | None = None
    completion: str | float | None = None


class _WireModel(_Wire):
    id: str
    name: str | None = None
    context_length: int | None = None
    pricing: _WirePricing | None = None
    supported_parameters: list[str] | None = None


class _WireList(_Wire):
    data: list[Any]


class _WireSnapshot(_WireList):
    fetched_at: str
    source: str


def price_parse(value: str | float | None) -> float | None:
    """OpenRouter's per-token USD string as a float; missing, negative ("-1": varies) or unparseable: None."""
    if value is None or value == "":
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price >= 0 else None


def models_parse(payload: str | bytes, *, provider: str = "openrouter", prefix: str = "") -> list[ModelInfo]:
    """The models of a ``/models`` reply (``ValueError`` if malformed); malformed entries are skipped."""
    listing = _WireList.model_validate_json(payload)
    models: list[ModelInfo] = []
    for raw in listing.data:
        try:
            entry = _WireModel.model_validate(raw)
        except ValidationError:
            logger.warning("%s /models: skipped a malformed entry %.200r", provider, raw)
            continue
        pricing = entry.pricing or _WirePricing()
        models.append(
            ModelInfo(
                id=prefix + entry.id,
                name=entry.name or entry.id,
                context_length=entry.context_length,
                prompt_price=price_parse(pricing.prompt),
                completion_price=price_parse(pricing.completion),
                supported_parameters=entry.supported_parameters or [],
                provider=provider,
            )
        )
    return models


def endpoint_models_parse(payload: str | bytes, endpoint: str) -> list[ModelInfo]:
    """A configured endpoint's ``/models`` as ``<endpoint>/<id>`` entries, prices unknown.

    OpenAI-compatible servers publish no prices in OpenRouter's sense; a self-hosted model's cost is not ours
    to guess.
    """
    return [
        info.model_copy(update={"prompt_price": None, "completion_price": None})
        for info in models_parse(payload, provider=endpoint, prefix=f"{endpoint}/")
    ]


# --- The catalog ----------------------------------------------------------------------------------------


class Catalog:
    """Every model this installation knows, with where the list came from."""

    def __init__(
        self,
        models: list[ModelInfo],
        *,
        source: str,
        fetched_at: str | None,
        is_live: bool,
        error: str | None = None,
        endpoint_errors: dict[str, str] | None = None,
    ) -> None:
        self.models: list[ModelInfo] = []
        self._by_id: dict[str, ModelInfo] = {}
        for info in models:
            if info.id not in self._by_id:
                self._by_id[info.id] = info
                self.models.append(info)
        self.source = source
        self.fetched_at = fetched_at
        self.is_live = is_live
        # Why the live catalog could not be used (the snapshot stands in), if it could not.
        self.error = error
        self.endpoint_errors = endpoint_errors or {}

    def get(self, model: str) -> ModelInfo | None:
        return self._by_id.get(model)

    def search(self, query: str, limit: int = 20) -> list[ModelInfo]:
        """Models whose id, name or vendor contain every word of ``query``, best matches first."""
        terms = query.lower().split()
        if not terms:
            return self.models[:limit]
        needle = " ".join(terms)
        ranked: list[tuple[int, int, ModelInfo]] = []
        for position, info in enumerate(self.models):
            haystack = f"{info.id} {info.name} {info.vendor} {info.provider}".lower()
            if not all(term in haystack for term in terms):
                continue
            model_id, name = info.id.lower(), info.name.lower()
            if needle in {model_id, model_id.lstrip("~")}:
                rank = 0
            elif model_id.lstrip("~").startswith(needle) or model_id.split("/", 1)[-1].startswith(needle):
                rank = 1
            elif needle in name:
                rank = 2
            else:
                rank = 3
            ranked.append((rank, position, info))
        return [info for _, _, info in sorted(ranked, key=lambda item: item[:2])[:limit]]


@dataclass(frozen=True)
class CatalogConfig:
    """What the catalog depends on; any change (tests overriding settings) means a fresh catalog."""

    base_url: str = "https://openrouter.ai/api/v1"
    api_key: str = ""
    endpoints: tuple[tuple[str, str], ...] = ()
    endpoint_keys: tuple[tuple[str, str], ...] = ()
    cache_seconds: float = 3600.0

    @classmethod
    def from_settings(cls) -> CatalogConfig:
        from django.conf import settings

        return cls(
            base_url=settings.OPENROUTER_BASE_URL,
            api_key=settings.OPENROUTER_API_KEY,
            endpoints=tuple(sorted(settings.FUSIONROOM_ENDPOINTS.items())),
            endpoint_keys=tuple(sorted((k, v) for k, v in settings.FUSIONROOM_ENDPOINT_KEYS.items() if v)),
            cache_seconds=float(settings.CATALOG_CACHE_SECONDS),
        )

    def headers(self, endpoint: str | None = None) -> dict[str, str]:
        key = self.api_key if endpoint is None else dict(self.endpoint_keys).get(endpoint, "")
        return {"Authorization": f"Bearer {key}"} if key else {}


@functools.cache
def snapshot_load(path: Path = SNAPSHOT_PATH) -> Catalog:
    """The shipped snapshot of OpenRouter's catalog (read once)."""
    raw = path.read_text(encoding="utf-8")
    meta = _WireSnapshot.model_validate_json(raw)
    return Catalog(
        models_parse(json.dumps({"data": meta.data})),
        source=meta.source,
        fetched_at=meta.fetched_at,
        is_live=False,
    )


def demo_models() -> list[ModelInfo]:
    return list(DEMO_MODELS)


def _assemble(
    config: CatalogConfig,
    openrouter: list[ModelInfo] | None,
    endpoint_models: list[ModelInfo],
    *,
    error: str | None = None,
    endpoint_errors: dict[str, str] | None = None,
) -> Catalog:
    snapshot = snapshot_load()
    live = openrouter is not None
    return Catalog(
        [*demo_models(), *endpoint_models, *(snapshot.models if openrouter is None else openrouter)],
        source=f"OpenRouter GET {config.base_url}/models" if live else snapshot.source,
        fetched_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if live else snapshot.fetched_at,
        is_live=live,
        error=error,
        endpoint_errors=endpoint_errors,
    )


# --- Fetching and caching ----------------------------------------------------------------------------

_cache: dict[CatalogConfig, tuple[float, Catalog]] = {}
# The catalog without any network (snapshot and demo models), assembled once per configuration: until a
# live catalog is cached (or for ever, with no key and no endpoint answering) every price and label read on
# the event loop comes from it, and assembling it indexes a few hundred models.
_offline: dict[CatalogConfig, Catalog] = {}


def reset_catalog() -> None:
    """Forget every cached catalog (tests; an operator changing keys)."""
    _cache.clear()
    _offline.clear()


def cached_catalog(config: CatalogConfig | None = None) -> Catalog:
    """The catalog without any network: the cached one (even if stale), else snapshot and demo models.

    For code on the event loop that must not wait (prices while a run streams).
    """
    config = config or CatalogConfig.from_settings()
    entry = _cache.get(config)
    if entry:
        return entry[1]
    offline = _offline.get(config)
    if offline is None:
        offline = _offline[config] = _assemble(config, None, [])
    return offline


def _fresh(config: CatalogConfig) -> Catalog | None:
    entry = _cache.get(config)
    return entry[1] if entry and entry[0] > time.monotonic() else None


def _store(config: CatalogConfig, catalog: Catalog) -> Catalog:
    failed = catalog.error is not None or bool(catalog.endpoint_errors)
    ttl = min(config.cache_seconds, FAILURE_RETRY_SECONDS) if failed else config.cache_seconds
    _cache[config] = (time.monotonic() + ttl, catalog)
    return catalog


def _fetch_failed(what: str, exc: Exception) -> str:
    reason = f"{what} failed: {type(exc).__name__}: {exc}"
    logger.warning("catalog: %s", reason)
    return reason


def get_catalog(config: CatalogConfig | None = None) -> Catalog:
    """The catalog for sync code (Django views), fetched at most once per cache period.

    Called on a thread that runs an event loop, it never blocks: it answers from the cache or the snapshot.
    """
    config = config or CatalogConfig.from_settings()
    if (catalog := _fresh(config)) is not None:
        return catalog
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return cached_catalog(config)
    openrouter: list[ModelInfo] | None = None
    error: str | None = None
    endpoint_models: list[ModelInfo] = []
    endpoint_errors: dict[str, str] = {}
    with httpx.Client(timeout=FETCH_TIMEOUT) as client:
        if config.api_key:
            try:
                response = client.get(f"{config.base_url}/models", headers=config.headers())
                response.raise_for_status()
                openrouter = models_parse(response.content)
            except (httpx.HTTPError, ValueError) as exc:
                error = _fetch_failed("OpenRouter /models", exc)
        for name, url in config.endpoints:
            try:
                response = client.get(f"{url}/models", headers=config.headers(name))
                response.raise_for_status()
                endpoint_models += endpoint_models_parse(response.content, name)
            except (httpx.HTTPError, ValueError) as exc:
                endpoint_errors[name] = _fetch_failed(f"{name} /models", exc)
    return _store(
        config, _assemble(config, openrouter, endpoint_models, error=error, endpoint_errors=endpoint_errors)
    )


async def aget_catalog(
    config: CatalogConfig | None = None, *, client: httpx.AsyncClient | None = None
) -> Catalog:
    """The catalog for async code, fetched with the shared client at most once per cache period."""
    from apps.providers.http import shared_client

    config = config or CatalogConfig.from_settings()
    if (catalog := _fresh(config)) is not None:
        return catalog
    http = client or shared_client()

    async def fetch(url: str, headers: dict[str, str]) -> bytes:
        response = await http.get(url, headers=headers, timeout=FETCH_TIMEOUT)
        response.raise_for_status()
        return response.content

    openrouter: list[ModelInfo] | None = None
    error: str | None = None
    if config.api_key:
        try:
            openrouter = models_parse(await fetch(f"{config.base_url}/models", config.headers()))
        except (httpx.HTTPError, ValueError) as exc:
            error = _fetch_failed("OpenRouter /models", exc)
    endpoint_models: list[ModelInfo] = []
    endpoint_errors: dict[str, str] = {}
    for name, url in config.endpoints:
        try:
            body = await fetch(f"{url}/models", config.headers(name))
            endpoint_models += endpoint_models_parse(body, name)
        except (httpx.HTTPError, ValueError) as exc:
            endpoint_errors[name] = _fetch_failed(f"{name} /models", exc)
    return _store(
        config, _assemble(config, openrouter, endpoint_models, error=error, endpoint_errors=endpoint_errors)
    )
