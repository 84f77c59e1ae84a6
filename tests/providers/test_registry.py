"""Routing model ids to clients, prices, and the gateway built from settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.providers.base import ChatMessage, CompletionRequest, TextDelta, UnknownModelError, Usage
from apps.providers.catalog import reset_catalog
from apps.providers.demo import DemoClient
from apps.providers.openai_compat import OpenAICompatClient
from apps.providers.registry import Gateway, GatewayConfig, gateway_from_settings, reset_gateway
from tests.fakes.fixtures import FAKE_OPENROUTER_KEY
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    reset_gateway()
    reset_catalog()
    yield
    reset_gateway()
    reset_catalog()


def _gateway(key: str = "sk-or-test", **extra: Any) -> Gateway:
    return Gateway(
        GatewayConfig(openrouter_api_key=key, endpoints=(("ollama", "http://127.0.0.1:11434/v1"),), **extra)
    )


def _request(model: str) -> CompletionRequest:
    return CompletionRequest(model=model, messages=[ChatMessage(role="user", content="Say hello")])


def test_demo_models_route_to_the_demo_client_without_any_key() -> None:
    gateway = _gateway(key="")
    client = gateway.client_for("demo/atlas")

    assert isinstance(client, DemoClient) and client.is_demo
    assert gateway.client_for("demo/judge") is client
    assert gateway.is_demo("demo/writer") and not gateway.is_demo("openai/gpt-5.5")


def test_an_unknown_demo_model_is_refused_naming_the_real_ones() -> None:
    with pytest.raises(UnknownModelError) as caught:
        _gateway().client_for("demo/nonexistent")
    assert "demo/atlas" in caught.value.message
    assert caught.value.code == "invalid_model" and caught.value.status_code == 404


def test_endpoint_models_route_to_that_server_with_the_prefix_stripped() -> None:
    client = _gateway(key="").client_for("ollama/llama3.2")

    assert isinstance(client, OpenAICompatClient)
    assert client.provider == "ollama" and client.base_url == "http://127.0.0.1:11434/v1"
    assert client.upstream_model("ollama/llama3.2") == "llama3.2"


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-5.5",
        "anthropic/claude-opus-4.8",
        "~anthropic/claude-opus-latest",
        "~google/gemini-pro-latest",
        "meta-llama/llama-3.1-8b-instruct:free",
        "moonshotai/kimi-k2.6",
        "openrouter/auto",
    ],
)
def test_openrouter_slugs_route_to_openrouter_when_a_key_is_set(model: str) -> None:
    client = _gateway().client_for(model)

    assert isinstance(client, OpenAICompatClient) and client.provider == "openrouter"
    assert client.upstream_model(model) == model


def test_openrouter_slugs_without_a_key_say_which_variable_to_set() -> None:
    with pytest.raises(UnknownModelError) as caught:
        _gateway(key="").client_for("~openai/gpt-latest")
    assert "OPENROUTER_API_KEY" in caught.value.message


@pytest.mark.parametrize(
    "model",
    [
        "",
        "gpt-4o",
        "vendor/",
        "/model",
        "a/b/c",
        "vendor/model name",
        " openai/gpt-5.5",
        "Vendor!/x",
        "x/" + "y" * 300,
    ],
)
def test_garbage_ids_are_unknown_models(model: str) -> None:
    with pytest.raises(UnknownModelError) as caught:
        _gateway().client_for(model)
    assert "OpenRouter slug" in caught.value.message


def test_cost_is_the_reported_cost_else_catalog_prices_else_unknown() -> None:
    gateway = _gateway()
    usage = Usage(prompt_tokens=1000, completion_tokens=200, total_tokens=1200)

    assert gateway.cost_of("anthropic/claude-opus-4.8", usage.model_copy(update={"cost": 0.0123})) == 0.0123
    # 1000 x $5/M + 200 x $25/M from the snapshot.
    assert gateway.cost_of("anthropic/claude-opus-4.8", usage) == pytest.approx(0.005 + 0.005)
    assert gateway.cost_of("deepseek/deepseek-v4-pro", usage) == pytest.approx(1000 * 4.35e-7 + 200 * 8.7e-7)
    assert gateway.cost_of("moonshotai/kimi-k2.6", usage) is None
    assert gateway.cost_of("~anthropic/claude-opus-latest", usage) is None
    assert gateway.cost_of("nobody/knows-this", usage) is None
    assert gateway.cost_of("demo/atlas", usage) == 0.0


def test_structured_output_support_comes_from_the_catalog() -> None:
    gateway = _gateway()
    assert gateway.client_for("anthropic/claude-opus-4.8").supports_structured_output(
        "anthropic/claude-opus-4.8"
    )
    assert not gateway.client_for("moonshotai/kimi-k2.6").supports_structured_output("moonshotai/kimi-k2.6")
    assert gateway.client_for("demo/judge").supports_structured_output("demo/judge")


def test_available_models_are_only_what_this_installation_can_run(fake_upstream_thread: FakeUpstream) -> None:
    offline = Gateway(GatewayConfig()).available_models()
    assert offline and all(info.is_demo for info in offline)

    with_endpoint = Gateway(GatewayConfig(endpoints=(("lab", fake_upstream_thread.base_url),)))
    ids = {info.id for info in with_endpoint.available_models()}
    assert {"demo/atlas", "lab/fake/fast"} <= ids
    assert "anthropic/claude-opus-4.8" not in ids

    keyed = Gateway(GatewayConfig(openrouter_base_url=fake_upstream_thread.base_url, openrouter_api_key="k"))
    assert {"demo/atlas", "fake/fast"} <= {info.id for info in keyed.available_models()}


async def test_available_models_async(fake_upstream: FakeUpstream) -> None:
    gateway = Gateway(GatewayConfig(openrouter_base_url=fake_upstream.base_url, openrouter_api_key="k"))
    assert "fake/unpriced" in {info.id for info in await gateway.aavailable_models()}


def test_the_gateway_follows_settings_and_is_reused_while_they_hold(settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    first = gateway_from_settings()
    assert gateway_from_settings() is first
    with pytest.raises(UnknownModelError):
        first.client_for("openai/gpt-5.5")

    settings.OPENROUTER_API_KEY = "sk-or-now-set"
    second = gateway_from_settings()
    assert second is not first
    assert isinstance(second.client_for("openai/gpt-5.5"), OpenAICompatClient)

    settings.FUSIONROOM_ENDPOINTS = {"vllm": "http://10.0.0.5:8000/v1"}
    settings.FUSIONROOM_ENDPOINT_KEYS = {"vllm": ""}
    assert gateway_from_settings().route("vllm/qwen3") == "vllm"


async def test_openrouter_calls_carry_the_key_and_attribution_headers(
    fake_openrouter: FakeUpstream, settings: Any
) -> None:
    settings.FUSIONROOM_PUBLIC_URL = "https://fusion.example.org"
    client = gateway_from_settings().client_for("~openai/gpt-latest")
    text = "".join(
        [c.text async for c in client.stream(_request("~openai/gpt-latest")) if isinstance(c, TextDelta)]
    )

    assert text.startswith("~openai/gpt-latest on Say hello")
    (seen,) = fake_openrouter.completions()
    assert seen.body["model"] == "~openai/gpt-latest"
    assert seen.headers["authorization"] == f"Bearer {FAKE_OPENROUTER_KEY}"
    assert seen.headers["http-referer"] == "https://fusion.example.org"
    assert seen.headers["x-openrouter-title"] == "Fusion Room"


async def test_endpoint_calls_use_the_endpoint_key_and_the_bare_model_id(
    fake_upstream_thread: FakeUpstream, settings: Any
) -> None:
    settings.FUSIONROOM_ENDPOINTS = {"ollama": fake_upstream_thread.base_url}
    settings.FUSIONROOM_ENDPOINT_KEYS = {"ollama": "local-secret"}
    client = gateway_from_settings().client_for("ollama/llama3.2")
    chunks = [c async for c in client.stream(_request("ollama/llama3.2"))]

    assert any(isinstance(c, TextDelta) for c in chunks)
    (seen,) = fake_upstream_thread.completions()
    assert seen.body["model"] == "llama3.2"
    assert seen.headers["authorization"] == "Bearer local-secret"
    assert "x-openrouter-title" not in seen.headers
