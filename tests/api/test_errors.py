"""Every refusal and failure in OpenAI's error shape, with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.api.conftest import Caller, auth
from tests.api.test_fusion_model import sse_events
from tests.fakes.upstream import FakeUpstream, ModelScript

HELLO = [{"role": "user", "content": "Hello"}]
FAILING_PANEL = {"id": "fusion", "analysis_models": ["vendor/x", "vendor/y"], "model": "vendor/judge"}


@pytest.fixture
def panel_down(upstream: FakeUpstream) -> FakeUpstream:
    """Both models of ``FAILING_PANEL`` answer 503."""
    for model in ("vendor/x", "vendor/y"):
        upstream.script(model, ModelScript(error_status=503, error_message="no capacity"))
    return upstream


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "code", "param"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "fusion"}, "messages", "Field required"),
        ({"model": "fusion", "messages": []}, "messages", "at least 1"),
        ({"model": "fusion", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", "Input"),
        ({"messages": HELLO}, "model", "Field required"),
        ({"model": "fusion", "messages": HELLO, "n": 2}, "n", "less than or equal to 1"),
        ({"model": "fusion", "messages": HELLO, "temperature": 3}, "temperature", "less than or equal"),
        (
            {"model": "demo/atlas", "messages": HELLO, "tools": [{"type": "web"}]},
            "tools.0",
            "unsupported tool",
        ),
        (
            {"model": "fusion", "messages": [{"role": "user", "content": "x" * 200_001}]},
            "messages.0.content",
            "at most 200,000",
        ),
        (
            {"model": "fusion", "messages": HELLO, "plugins": [{"id": "fusion", "analysis_models": []}]},
            "",
            "at least 1",
        ),
        (
            {"model": "fusion", "messages": [{"role": "user", "content": "x" * 40_000}]},
            "messages",
            "limit is 32,000",
        ),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_problem(
    api: httpx.AsyncClient, alice: Caller, body: dict[str, Any], param: str, words: str
) -> None:
    response = await api.post("/chat/completions", headers=auth(alice), json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]
    if param:
        assert error["param"] == param


async def test_a_body_that_is_not_json_is_a_400(api: httpx.AsyncClient, alice: Caller) -> None:
    response = await api.post(
        "/chat/completions", headers={**auth(alice), "Content-Type": "application/json"}, content=b"{nope"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


async def test_a_body_over_the_upload_limit_is_a_413(
    api: httpx.AsyncClient, alice: Caller, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "fusion", "messages": [{"role": "user", "content": "x" * 2000}]},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


async def test_the_wrong_method_is_a_405(api: httpx.AsyncClient, alice: Caller) -> None:
    response = await api.get("/chat/completions", headers=auth(alice))
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("model", ["nope/nothing", "demo/unknown", "not a model"])
async def test_an_unknown_model_is_a_404(oai: AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and body["param"] == "model"
    assert model in body["message"]


async def test_an_unknown_panel_is_a_404(oai: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="No panel called 'nope'"):
        await oai.chat.completions.create(
            model="fusion/nope", messages=[{"role": "user", "content": "Hello"}]
        )


async def test_an_unknown_model_in_the_plugin_is_a_404(oai: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="vendor/model"):
        await oai.chat.completions.create(
            model="fusion",
            messages=[{"role": "user", "content": "Hello"}],
            extra_body={"plugins": [{"id": "fusion", "analysis_models": ["demo/atlas", "vendor/model"]}]},
        )


async def test_every_panel_model_failing_is_a_502_with_its_failure_reason(
    api: httpx.AsyncClient, alice: Caller, panel_down: FakeUpstream
) -> None:
    response = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "fusion", "messages": HELLO, "plugins": [FAILING_PANEL]},
    )
    assert response.status_code == 502
    error = error_of(response)
    assert error["failure_reason"] == "all_panels_failed" and error["code"] == "all_panels_failed"
    assert "no capacity" in error["message"]
    assert panel_down.requests_for("vendor/judge") == []


async def test_a_failure_after_the_stream_began_is_an_error_chunk_then_done(
    api: httpx.AsyncClient, alice: Caller, panel_down: FakeUpstream
) -> None:
    response = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "fusion", "messages": HELLO, "plugins": [FAILING_PANEL], "stream": True},
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    error = events[-2]
    assert isinstance(error, dict) and set(error) == {"error"}
    assert error["error"]["failure_reason"] == "all_panels_failed"  # type: ignore[index]
    progress = [e["fusion_progress"]["type"] for e in events[:-2] if isinstance(e, dict) and not e["choices"]]  # type: ignore[index]
    assert progress.count("seat.failed") == 2


async def test_the_openai_client_raises_the_error_chunk(oai: AsyncOpenAI, panel_down: FakeUpstream) -> None:
    stream = await oai.chat.completions.create(
        model="fusion",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        extra_body={"plugins": [FAILING_PANEL]},
    )
    with pytest.raises(openai.APIError, match="All panel models failed"):
        async for _ in stream:
            pass


async def test_a_plain_model_failing_before_its_first_token_keeps_the_status_meaningful(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/busy", ModelScript(error_status=429, retry_after="7", error_message="slow down"))
    upstream.script("vendor/down", ModelScript(error_status=503, error_message="down"))
    upstream.script("vendor/picky", ModelScript(error_status=400, error_message="bad tools"))
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.chat.completions.create(model="vendor/busy", messages=[{"role": "user", "content": "Hi"}])
    assert limited.value.response.headers["Retry-After"] == "7"
    with pytest.raises(openai.InternalServerError) as down:
        await oai.chat.completions.create(model="vendor/down", messages=[{"role": "user", "content": "Hi"}])
    assert down.value.status_code == 502
    with pytest.raises(openai.BadRequestError, match="bad tools"):
        await oai.chat.completions.create(model="vendor/picky", messages=[{"role": "user", "content": "Hi"}])
    # The same failures, streamed: the first token never came, so the status still tells.
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(
            model="vendor/down", messages=[{"role": "user", "content": "Hi"}], stream=True
        )


async def test_a_plain_model_failing_mid_stream_ends_with_an_error_chunk(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/flaky", ModelScript(text="one two three four five", error_mid_stream_after=2))
    response = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "vendor/flaky", "messages": HELLO, "stream": True},
    )
    events = sse_events(response.text)
    text = "".join(
        e["choices"][0]["delta"].get("content") or ""  # type: ignore[index]
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )
    assert text == "one two "
    assert events[-1] == "[DONE]"
    assert isinstance(events[-2], dict) and events[-2]["error"]["code"] == "upstream_error"  # type: ignore[index]
