"""OpenAI's chat-completions wire format as OpenRouter and compatible servers send it, as pydantic models.

Every field is optional or defaulted and unknown fields are ignored, because servers differ (OpenRouter's
``reasoning``, vLLM's ``reasoning_content``, usage in the last chunk or in a chunk of its own).
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from apps.providers.base import (
    Citation,
    CitationDelta,
    ProviderError,
    ProviderFailureReason,
    ReasoningDelta,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    Usage,
    text_storable,
)

# OpenRouter's "No endpoints found for <model>." (and "... that support tool use", "... matching your data
# policy"): no provider serves the request as asked. A routing answer, not a passing fault, so a retry
# seconds later gets the same answer.
_NO_ENDPOINTS = re.compile(r"\bno endpoints? (?:found|available)\b", re.IGNORECASE)
# OpenRouter answers an unknown model id with 400 "<id> is not a valid model ID"; other servers with a 404.
_NOT_A_MODEL = re.compile(r"\bnot a valid model\b", re.IGNORECASE)
MAX_CITATION_URL = 2048
MAX_CITATION_TITLE = 300


def status_retryable(status: int) -> bool:
    """408, 429 and every 5xx may go away on their own; 400/401/402/403/404 will not."""
    return status in {408, 425, 429} or status >= 500


def no_endpoints(message: str) -> bool:
    """Whether an error says no provider endpoint serves the request (OpenRouter's "No endpoints found")."""
    return bool(_NO_ENDPOINTS.search(message))


def failure_reason(status: int | None, message: str) -> ProviderFailureReason | None:
    """The brief's failure reason for an error a provider answered with, when it is one of them."""
    if status == 402:
        return "insufficient_credits"
    if status == 429:
        return "rate_limited"
    if _NOT_A_MODEL.search(message) or (status == 404 and not no_endpoints(message)):
        return "invalid_model"
    return None


def error_retryable(status: int, message: str) -> bool:
    """``status_retryable``, except for "no endpoints": OpenRouter sends it as a 503, yet retrying only
    makes a panel wait seconds (backoff) for the same answer while its deadline or quorum would move on."""
    return status_retryable(status) and not no_endpoints(message)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WireFunction(_Wire):
    name: str | None = None
    arguments: str | None = None


class WireToolCall(_Wire):
    index: int = 0
    id: str | None = None
    function: WireFunction | None = None


class WireUrlCitation(_Wire):
    # ``content`` (the page's text OpenRouter may add) is not kept: the judge and the writer get the
    # answer and its sources' addresses, as for our own tools' sources.
    url: str
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class WireAnnotation(_Wire):
    """One entry of ``message.annotations`` / ``delta.annotations``; only ``url_citation`` is read."""

    type: str
    url_citation: WireUrlCitation | None = None


class WireDelta(_Wire):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[WireToolCall] | None = None
    # Validated one by one (``citations_parse``): an annotation of a shape we do not know is skipped, never
    # a reason to fail the answer it came with.
    annotations: list[Any] | None = None


class WireMessage(WireDelta):
    """A whole message, from a non-streaming reply."""


class WireChoice(_Wire):
    index: int = 0
    delta: WireDelta | None = None
    message: WireMessage | None = None
    finish_reason: str | None = None


class WireCompletionDetails(_Wire):
    reasoning_tokens: int | None = None


class WirePromptDetails(_Wire):
    cached_tokens: int | None = None


class WireServerToolUse(_Wire):
    web_search_requests: int | None = None
    web_fetch_requests: int | None = None


class WireUsage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    # OpenRouter's total for the request in USD, its server tools' price included.
    cost: float | None = None
    completion_tokens_details: WireCompletionDetails | None = None
    prompt_tokens_details: WirePromptDetails | None = None
    # How many server-side searches and page reads ran, when the server counts them.
    server_tool_use: WireServerToolUse | None = None

    def to_usage(self) -> Usage:
        tools = self.server_tool_use or WireServerToolUse()
        prompt = self.prompt_tokens or 0
        completion = self.completion_tokens or 0
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=self.total_tokens if self.total_tokens is not None else prompt + completion,
            reasoning_tokens=(
                self.completion_tokens_details and self.completion_tokens_details.reasoning_tokens
            )
            or 0,
            cached_tokens=(self.prompt_tokens_details and self.prompt_tokens_details.cached_tokens) or 0,
            web_search_requests=max(0, tools.web_search_requests or 0),
            web_fetch_requests=max(0, tools.web_fetch_requests or 0),
            cost=self.cost,
        )


class WireError(_Wire):
    code: int | str | None = None
    message: str = "unknown error"
    metadata: dict[str, Any] | None = None


class WireChunk(_Wire):
    """One streamed chunk, or a whole non-streaming completion (``choices[].message``)."""

    id: str | None = None
    model: str | None = None
    choices: list[WireChoice] = []
    usage: WireUsage | None = None
    error: WireError | None = None


class WireErrorBody(_Wire):
    error: WireError


def chunk_deltas(choice: WireChoice) -> list[StreamChunk]:
    """The text, reasoning, tool-call and citation pieces one choice carries, in that order."""
    delta = choice.delta or choice.message
    if delta is None:
        return []
    out: list[StreamChunk] = []
    reasoning = delta.reasoning or delta.reasoning_content
    if reasoning:
        out.append(ReasoningDelta(text=text_storable(reasoning)))
    if delta.content:
        out.append(TextDelta(text=text_storable(delta.content)))
    for call in delta.tool_calls or []:
        function = call.function or WireFunction()
        out.append(
            ToolCallDelta(
                index=call.index, id=call.id, name=function.name, arguments=function.arguments or ""
            )
        )
    if delta.annotations:
        citations = citations_parse(delta.annotations)
        if citations:
            out.append(CitationDelta(citations=citations))
    return out


def citations_parse(annotations: list[Any]) -> list[Citation]:
    """The ``url_citation`` annotations among ``annotations`` (OpenAI's chat-completions shape, which
    OpenRouter's web tools use): ``{"type": "url_citation", "url_citation": {"url", "title", "content",
    "start_index", "end_index"}}``. Anything else, or a citation without an http(s) address, is skipped."""
    citations: list[Citation] = []
    for raw in annotations:
        try:
            annotation = WireAnnotation.model_validate(raw)
        except ValidationError:
            continue
        cited = annotation.url_citation
        if annotation.type != "url_citation" or cited is None:
            continue
        url = text_storable(cited.url.strip())
        if len(url) > MAX_CITATION_URL or not url.lower().startswith(("https://", "http://")):
            continue
        citations.append(
            Citation(
                url=url,
                title=text_storable((cited.title or "").strip()[:MAX_CITATION_TITLE]),
                start_index=cited.start_index,
                end_index=cited.end_index,
            )
        )
    return citations


def retry_after_seconds(value: str | None, *, cap: float) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)


def error_from_status(
    status: int, body: bytes, *, provider: str, retry_after: float | None, secrets: tuple[str, ...] = ()
) -> ProviderError:
    """The ``ProviderError`` for an HTTP error reply, with the provider's own message when it sent one."""
    message = ""
    code: str | None = None
    try:
        parsed = WireErrorBody.model_validate_json(body)
        message = parsed.error.message
        code = None if parsed.error.code is None else str(parsed.error.code)
    except ValueError:
        message = body[:300].decode("utf-8", "replace").strip()
    return ProviderError(
        redact(f"{provider} returned HTTP {status}: {message or 'no details'}", secrets),
        status_code=status,
        code=code,
        retryable=error_retryable(status, message),
        retry_after=retry_after,
        reason=failure_reason(status, message),
    )


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Some servers echo the key they were sent in their error message; it must not reach a log or a page."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
