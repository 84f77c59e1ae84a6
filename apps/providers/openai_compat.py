"""The client for OpenRouter and any OpenAI-compatible server (Ollama, vLLM, LM Studio).

``stream()`` POSTs ``{base_url}/chat/completions`` with ``stream: true`` and yields the contract's chunks.
Failures before the first token that may go away (408, 429, 5xx, connection errors, timeouts) are retried with
exponential backoff and jitter, honouring ``Retry-After``; once anything was yielded nothing is retried, since
the caller has already shown it. A read timeout ends a stalled stream and a total deadline bounds the whole
call, retries and waits included. No Django here: the registry passes the configuration in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from apps.providers.base import (
    CompletionRequest,
    Finish,
    ProviderError,
    StreamChunk,
    UsageReport,
)
from apps.providers.http import shared_client_ready
from apps.providers.openai_wire import (
    WireChunk,
    chunk_deltas,
    error_from_status,
    error_retryable,
    failure_reason,
    no_endpoints,
    redact,
    retry_after_seconds,
)
from apps.providers.sse import SSEDecoder

logger = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024
# After ``[DONE]`` the body's last bytes (the end of its chunked encoding) are read for at most this long,
# so the connection goes back to the pool for the next call instead of being closed.
DRAIN_SECONDS = 0.1
DRAIN_BYTES = 64 * 1024


class _KnowsStructuredOutput(Protocol):
    @property
    def supports_structured_output(self) -> bool: ...


StructuredOutputSource = Callable[[str], bool] | Mapping[str, _KnowsStructuredOutput]


class _Progress:
    """Where one call stands, across its attempts. Not its text: the caller keeps what it was given
    (``apps.fusion.calls.CallProgress``), so a failure's partial text is the caller's."""

    def __init__(self) -> None:
        self.yielded = False
        self.finish_reason: str | None = None
        self.model: str | None = None


class OpenAICompatClient:
    """``ModelClient`` for one OpenAI-compatible server; safe to share across concurrent calls and loops.

    ``strip_prefix`` turns our id into the server's (``ollama/`` for an endpoint; empty for OpenRouter).
    ``structured_output`` answers ``supports_structured_output``: catalog entries by id, or a callable.
    Without ``http_client`` each call uses the running loop's shared client.
    """

    is_demo = False

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        provider: str = "openrouter",
        strip_prefix: str = "",
        max_retries: int = 3,
        total_timeout: float = 600.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        extra_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        structured_output: StructuredOutputSource | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.strip_prefix = strip_prefix
        self.max_retries = max_retries
        self.total_timeout = total_timeout
        self.read_timeout = read_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_cap = retry_after_cap
        self._api_key = api_key or ""
        self._headers = {"Accept": "text/event-stream", **(extra_headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=30.0)
        self._http = http_client
        self._structured_output = structured_output

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatClient(provider={self.provider!r}, base_url={self.base_url!r})"

    def supports_structured_output(self, model: str) -> bool:
        source = self._structured_output
        if source is None:
            return False
        if callable(source):
            return source(model)
        info = source.get(model) or source.get(self.upstream_model(model))
        return bool(info and info.supports_structured_output)

    def upstream_model(self, model: str) -> str:
        """The id the server knows the model by (``ollama/llama3.2`` -> ``llama3.2``)."""
        return model.removeprefix(self.strip_prefix) if self.strip_prefix else model

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        """Text, reasoning and tool-call deltas as they arrive, then ``UsageReport`` (if sent) and ``Finish``.

        Raises ``ProviderError``; what was yielded before a failure is the caller's to keep.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        progress = _Progress()
        attempt = 0
        while True:
            try:
                async for chunk in self._attempt(request, progress, deadline):
                    yield chunk
                return
            except ProviderError as exc:
                exc.model = exc.model or request.model
                if progress.yielded or not exc.retryable or attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                if loop.time() + delay >= deadline:
                    raise
                logger.warning(
                    "%s: %s failed (%s), retry %d/%d in %.2fs",
                    *(self.provider, request.model, exc.message, attempt + 1, self.max_retries, delay),
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["model"] = self.upstream_model(request.model)
        body["stream"] = True
        # OpenAI-compatible servers only report usage when asked; OpenRouter always does and ignores this.
        body["stream_options"] = {"include_usage": True}
        return body

    def _error(self, message: str, **kwargs: Any) -> ProviderError:
        return ProviderError(redact(f"{self.provider}: {message}", (self._api_key,)), **kwargs)

    async def _attempt(
        self, request: CompletionRequest, progress: _Progress, deadline: float
    ) -> AsyncIterator[StreamChunk]:
        client = self._http or await shared_client_ready()
        http_request = client.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            json=self._body(request),
            headers=self._headers,
            timeout=self._timeout,
        )
        try:
            response = await self._within(deadline, client.send(http_request, stream=True))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        try:
            if response.status_code >= 400:
                body = await self._within(deadline, response.aread())
                raise error_from_status(
                    response.status_code,
                    body[:MAX_ERROR_BODY],
                    provider=self.provider,
                    retry_after=retry_after_seconds(
                        response.headers.get("retry-after"), cap=self.retry_after_cap
                    ),
                    secrets=(self._api_key,),
                )
            async for chunk in self._chunks(response, progress, deadline):
                if not isinstance(chunk, UsageReport | Finish):
                    progress.yielded = True
                yield chunk
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        finally:
            await response.aclose()

    async def _chunks(
        self, response: httpx.Response, progress: _Progress, deadline: float
    ) -> AsyncIterator[StreamChunk]:
        decoder = SSEDecoder()
        if response.headers.get("content-type", "").startswith("application/json"):
            # A server that ignored ``stream: true`` sent the whole completion at once.
            for chunk in self._parse(await self._within(deadline, response.aread()), progress):
                yield chunk
            decoder.done = True
        else:
            # Raw blocks, not lines: one read (and one timeout) per network read rather than per line, and
            # no text decoding before the JSON parser, which takes bytes.
            blocks = response.aiter_bytes()
            loop = asyncio.get_running_loop()
            while not decoder.done:
                if deadline - loop.time() > self.read_timeout:
                    # The total deadline is further away than a stall: httpx's own read timeout (this
                    # request's ``read``) ends a stall first, so no timer of ours is needed per read.
                    try:
                        block = await anext(blocks, None)
                    except httpx.ReadTimeout:
                        raise self._stall_error() from None
                else:
                    block = await self._within(deadline, anext(blocks, None), stall=True)
                if block is None:
                    break
                for data in decoder.feed_bytes(block):
                    for chunk in self._parse(data, progress):
                        yield chunk
            if decoder.done:
                await self._rest_drain(blocks)
        if not decoder.done and progress.finish_reason is None:
            raise self._error("the connection closed before the answer was complete", retryable=True)
        yield Finish(reason=progress.finish_reason, model=progress.model)

    @staticmethod
    async def _rest_drain(blocks: AsyncIterator[bytes]) -> None:
        """Read the little that follows ``[DONE]``: a response read to its end keeps its connection alive
        (closing one mid-body closes the connection, and the next call pays a new TCP and TLS handshake)."""
        read = 0
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for block in blocks:
                    read += len(block)
                    if read > DRAIN_BYTES:
                        return

    def _parse(self, data: str | bytes, progress: _Progress) -> list[StreamChunk]:
        try:
            chunk = WireChunk.model_validate_json(data)
        except ValidationError as exc:
            raise self._error(f"sent a malformed chunk ({exc.errors()[0]['msg']})") from None
        progress.model = chunk.model or progress.model
        if chunk.error is not None:
            code = chunk.error.code
            message = chunk.error.message
            status = code if isinstance(code, int) else None
            raise self._error(
                message,
                code=None if code is None else str(code),
                status_code=status,
                retryable=(code == "server_error" and not no_endpoints(message))
                or (status is not None and error_retryable(status, message)),
                reason=failure_reason(status, message),
            )
        out: list[StreamChunk] = []
        for choice in chunk.choices:
            out.extend(chunk_deltas(choice))
            if choice.finish_reason == "error":
                raise self._error("the answer ended with an error", retryable=True)
            progress.finish_reason = choice.finish_reason or progress.finish_reason
        if chunk.usage is not None:
            out.append(UsageReport(usage=chunk.usage.to_usage()))
        return out

    async def _within(self, deadline: float, awaitable: Any, *, stall: bool = False) -> Any:
        """Await with the total deadline (and, for stream reads, the read timeout) as our own errors."""
        remaining = deadline - asyncio.get_running_loop().time()
        limit = min(remaining, self.read_timeout) if stall else remaining
        try:
            async with asyncio.timeout(max(limit, 0)):
                return await awaitable
        except TimeoutError:
            if stall and self.read_timeout < remaining:
                raise self._stall_error() from None
            message = f"no complete answer within {self.total_timeout:g}s"
            raise self._error(message, code="timeout", retryable=False) from None

    def _stall_error(self) -> ProviderError:
        return self._error(f"sent nothing for {self.read_timeout:g}s", code="timeout", retryable=True)

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return self._error(f"timed out ({type(exc).__name__})", code="timeout", retryable=True)
        return self._error(
            f"connection failed ({type(exc).__name__}: {exc})", code="connection", retryable=True
        )
