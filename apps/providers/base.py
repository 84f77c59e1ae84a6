"""The contract every model client meets: a completion request in, an async stream of typed chunks out.

No Django here: clients get their configuration passed in, so the engine and the benchmarks can use them
without settings. ``apps.providers.registry`` builds them from Django settings.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


def text_storable(text: str) -> str:
    """``text`` with NUL characters replaced by U+FFFD, length unchanged (offsets stay valid).

    Model output is untrusted: a NUL is legal in JSON strings but PostgreSQL text and jsonb columns refuse it,
    which would make a whole run fail to save. One character for one keeps every streamed offset true.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def json_storable(data: Any) -> Any:
    """Decoded JSON (or what will be stored as JSON) with ``text_storable`` applied to every string in it:
    a ``\\u0000`` escape decodes to a NUL, and PostgreSQL's jsonb refuses it as its text columns do."""
    if isinstance(data, str):
        return text_storable(data)
    if isinstance(data, list):
        return [json_storable(item) for item in data]
    if isinstance(data, dict):
        return {key: json_storable(value) for key, value in data.items()}
    return data


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class CompletionRequest(BaseModel):
    """What we ask of one model: OpenAI chat-completions fields we actually use."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    # {"type": "json_schema", "json_schema": {...}} where the model supports structured output.
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    # Searches and page reads a server ran for the model during the call (OpenRouter's server tools), when
    # it says so; their price is part of ``cost``.
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    # USD. None means unknown: never invent a price.
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            web_fetch_requests=self.web_fetch_requests + other.web_fetch_requests,
            cost=None if self.cost is None or other.cost is None else self.cost + other.cost,
        )

    @property
    def server_tool_requests(self) -> int:
        return self.web_search_requests + self.web_fetch_requests


class TextDelta(BaseModel):
    kind: Literal["text"] = "text"
    text: str


class ReasoningDelta(BaseModel):
    kind: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallDelta(BaseModel):
    """A fragment of a streamed tool call, as OpenAI sends it: pieces of one call share ``index``."""

    kind: Literal["tool_call"] = "tool_call"
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class Citation(BaseModel):
    """A web page the answer cites: an ``url_citation`` annotation (a server-side web tool's result).

    ``start_index`` / ``end_index`` say which part of the answer it backs, when the server says so."""

    url: str
    title: str = ""
    start_index: int | None = None
    end_index: int | None = None


class CitationDelta(BaseModel):
    """Citations that arrived with the message (in a stream, with a delta; in a whole reply, at once)."""

    kind: Literal["citations"] = "citations"
    citations: list[Citation]


class UsageReport(BaseModel):
    kind: Literal["usage"] = "usage"
    usage: Usage


class Finish(BaseModel):
    kind: Literal["finish"] = "finish"
    reason: str | None = None
    # The model that actually answered (OpenRouter may route an alias or a fallback).
    model: str | None = None


StreamChunk = Annotated[
    TextDelta | ReasoningDelta | ToolCallDelta | CitationDelta | UsageReport | Finish,
    Field(discriminator="kind"),
]


# The brief's failure reasons a provider's error can be: the account has no credits left (OpenRouter's 402),
# the provider is rate limiting (429), or no such model (OpenRouter's 400 "not a valid model ID", a 404).
ProviderFailureReason = Literal["insufficient_credits", "rate_limited", "invalid_model"]


class ProviderError(Exception):
    """A model call that failed, with what a fan-out needs to record it and carry on.

    ``retryable`` says whether trying again could help (408, 429, 5xx, connection errors) and is only
    honoured before the first token. ``reason`` is the brief's failure reason when the error is one of
    those (else None). What streamed before a mid-stream failure is the caller's: it was given every piece
    (``apps.fusion.calls.CallProgress`` keeps them).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        model: str | None = None,
        reason: ProviderFailureReason | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.model = model
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class UnknownModelError(ProviderError):
    """No configured provider serves this model id (or it needs a key that is not set)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(reason, status_code=404, code="invalid_model", model=model, reason="invalid_model")


@runtime_checkable
class ModelClient(Protocol):
    """One protocol's client. ``stream`` yields chunks and raises ``ProviderError`` on failure; it is an async
    generator, so a caller that stops early can ``aclose`` it and release its connection at once."""

    #: True for the offline demo models, which the UI and the API always label as demo.
    is_demo: bool

    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]: ...

    def supports_structured_output(self, model: str) -> bool: ...


class ModelGateway(Protocol):
    """What the engine needs from the outside world: a client per model id, and prices."""

    def client_for(self, model: str) -> ModelClient:
        """Raise ``UnknownModelError`` when no provider serves ``model``."""
        ...

    def cost_of(self, model: str, usage: Usage) -> float | None:
        """The provider-reported cost if any, else computed from catalog prices, else None."""
        ...

    def is_demo(self, model: str) -> bool: ...

    def supports_tools(self, model: str) -> bool:
        """Whether ``model`` may be offered tools (the catalog says so, or does not know the model)."""
        ...
