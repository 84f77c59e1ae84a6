"""Model id -> client, and prices: the ``ModelGateway`` the engine runs with, built from Django settings.

Routing, in order: ``demo/...`` -> the offline demo models; ``<endpoint>/<model>`` where ``<endpoint>`` is a
key of ``FUSIONROOM_ENDPOINTS`` -> that OpenAI-compatible server (prefix stripped); any other
OpenRouter-looking slug (``vendor/model``, ``vendor/model:variant``, ``~vendor/name-latest``) -> OpenRouter
when ``OPENROUTER_API_KEY`` is set. Everything else is an ``UnknownModelError`` that says what to configure.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from apps.providers.base import ModelClient, UnknownModelError, Usage
from apps.providers.catalog import (
    CatalogConfig,
    ModelInfo,
    aget_catalog,
    cached_catalog,
    demo_models,
    get_catalog,
)
from apps.providers.openai_compat import OpenAICompatClient

if TYPE_CHECKING:
    from apps.providers.demo import RoleReply

OPENROUTER = "openrouter"
DEMO = "demo"
APP_TITLE = "Fusion Room"
MAX_MODEL_ID = 200
# Lower-case vendor, a model name, an optional ":variant"; "~" marks OpenRouter's moving "-latest" aliases.
_OPENROUTER_SLUG = re.compile(r"~?[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(?::[a-z0-9._-]+)?")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything a gateway depends on. Hashable: gateways are cached per configuration."""

    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_api_key: str = ""
    endpoints: tuple[tuple[str, str], ...] = ()
    endpoint_keys: tuple[tuple[str, str], ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    demo_delay: float = 0.02
    # "module.function" giving the demo judge's and writer's words (a ``RoleReply``); "": cedar's instead.
    demo_role_reply: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    total_timeout: float = 600.0
    max_retries: int = 3
    catalog_cache_seconds: float = 3600.0

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        from django.conf import settings

        # The catalog reads the provider settings it shares with us; reading them once keeps both in step.
        catalog = CatalogConfig.from_settings()
        return cls(
            openrouter_base_url=catalog.base_url,
            openrouter_api_key=catalog.api_key,
            endpoints=catalog.endpoints,
            endpoint_keys=catalog.endpoint_keys,
            public_url=settings.FUSIONROOM_PUBLIC_URL,
            demo_delay=settings.DEMO_MODEL_DELAY,
            demo_role_reply=settings.DEMO_ROLE_REPLY,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
            read_timeout=settings.PROVIDER_READ_TIMEOUT,
            total_timeout=settings.PROVIDER_TOTAL_TIMEOUT,
            max_retries=settings.PROVIDER_MAX_RETRIES,
            catalog_cache_seconds=catalog.cache_seconds,
        )

    @property
    def catalog(self) -> CatalogConfig:
        return CatalogConfig(
            base_url=self.openrouter_base_url,
            api_key=self.openrouter_api_key,
            endpoints=self.endpoints,
            endpoint_keys=self.endpoint_keys,
            cache_seconds=self.catalog_cache_seconds,
        )


class Gateway:
    """The ``ModelGateway``: one client per provider, created on first use and reused."""

    def __init__(self, config: GatewayConfig, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http_client
        self._endpoints = dict(config.endpoints)
        self._clients: dict[str, ModelClient] = {}

    def route(self, model: str) -> str:
        """``"demo"``, an endpoint's name or ``"openrouter"``; ``UnknownModelError`` if nothing serves it."""
        prefix, sep, rest = model.partition("/")
        if len(model) > MAX_MODEL_ID or not sep or not rest or model != model.strip():
            raise UnknownModelError(model, _unknown(model))
        if prefix == DEMO:
            if model not in {info.id for info in demo_models()}:
                known = ", ".join(info.id for info in demo_models())
                raise UnknownModelError(
                    model, f"There is no demo model called {model}; the demo models are {known}."
                )
            return DEMO
        if prefix in self._endpoints:
            return prefix
        if not _OPENROUTER_SLUG.fullmatch(model):
            raise UnknownModelError(model, _unknown(model))
        if not self.config.openrouter_api_key:
            raise UnknownModelError(
                model,
                f"{model} is an OpenRouter model: set OPENROUTER_API_KEY to use it "
                "(or pick a demo/... model, which runs offline).",
            )
        return OPENROUTER

    def client_for(self, model: str) -> ModelClient:
        route = self.route(model)
        if route not in self._clients:
            self._clients[route] = self._client_build(route)
        return self._clients[route]

    def is_demo(self, model: str) -> bool:
        return model.startswith(f"{DEMO}/")

    def supports_tools(self, model: str) -> bool:
        if self.is_demo(model):
            return False
        info = self.model_info(model)
        # Unknown models are given the benefit of the doubt: most chat models take tools.
        return info is None or not info.supported_parameters or "tools" in info.supported_parameters

    def model_info(self, model: str) -> ModelInfo | None:
        """What the catalog knows of ``model`` (never waits on the network: the cached or shipped catalog)."""
        return cached_catalog(self.config.catalog).get(model)

    def cost_of(self, model: str, usage: Usage) -> float | None:
        if self.is_demo(model):
            return 0.0
        if usage.cost is not None:
            return usage.cost
        if usage.server_tool_requests:
            # Server-side searches are priced per request by engine, which no catalog price says: a cost
            # from tokens alone would undercount, so it is unknown rather than wrong.
            return None
        info = self.model_info(model)
        if info is None or info.prompt_price is None or info.completion_price is None:
            return None
        return usage.prompt_tokens * info.prompt_price + usage.completion_tokens * info.completion_price

    def available_models(self) -> list[ModelInfo]:
        """What this installation can run: demo models, answering endpoints' models, OpenRouter's if keyed."""
        return self._runnable(get_catalog(self.config.catalog).models)

    async def aavailable_models(self) -> list[ModelInfo]:
        return self._runnable((await aget_catalog(self.config.catalog, client=self._http)).models)

    def _runnable(self, models: list[ModelInfo]) -> list[ModelInfo]:
        return [
            info
            for info in models
            if info.is_demo
            or info.provider in self._endpoints
            or (info.provider == OPENROUTER and bool(self.config.openrouter_api_key))
        ]

    def _client_build(self, route: str) -> ModelClient:
        if route == DEMO:
            from apps.providers.demo import DemoClient  # the demo module is optional weight for real runs

            return DemoClient(delay=self.config.demo_delay, role_reply=self._demo_role_reply())
        if route == OPENROUTER:
            return self._compat(
                base_url=self.config.openrouter_base_url,
                api_key=self.config.openrouter_api_key,
                provider=OPENROUTER,
                extra_headers={"HTTP-Referer": self.config.public_url, "X-OpenRouter-Title": APP_TITLE},
            )
        return self._compat(
            base_url=self._endpoints[route],
            api_key=dict(self.config.endpoint_keys).get(route) or None,
            provider=route,
            strip_prefix=f"{route}/",
        )

    def _compat(
        self,
        *,
        base_url: str,
        api_key: str | None,
        provider: str,
        strip_prefix: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> OpenAICompatClient:
        return OpenAICompatClient(
            base_url=base_url,
            api_key=api_key,
            provider=provider,
            strip_prefix=strip_prefix,
            extra_headers=extra_headers,
            max_retries=self.config.max_retries,
            total_timeout=self.config.total_timeout,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            http_client=self._http,
            structured_output=self._structured_output,
        )

    def _demo_role_reply(self) -> RoleReply | None:
        # Named, not imported: it reads the engine's prompts, and the providers import nothing above them.
        if not self.config.demo_role_reply:
            return None
        module, _, name = self.config.demo_role_reply.rpartition(".")
        reply: RoleReply = getattr(importlib.import_module(module), name)
        return reply

    def _structured_output(self, model: str) -> bool:
        info = self.model_info(model)
        return info is not None and info.supports_structured_output


def _unknown(model: str) -> str:
    return (
        f"{model!r} is not a model id this server can route: use a demo/... model, "
        "<endpoint>/<model> for a server in FUSIONROOM_ENDPOINTS, or an OpenRouter slug such as vendor/model."
    )


_gateways: dict[GatewayConfig, Gateway] = {}


def gateway_from_settings() -> Gateway:
    """The gateway for the current settings; overriding settings (tests) yields a fresh one."""
    config = GatewayConfig.from_settings()
    gateway = _gateways.get(config)
    if gateway is None:
        gateway = _gateways[config] = Gateway(config)
    return gateway


def reset_gateway() -> None:
    _gateways.clear()
