"""A real loopback HTTP server that speaks OpenRouter's chat-completions protocol, for tests and benchmarks.

It listens on 127.0.0.1 (a free port unless told otherwise) and answers

- ``POST .../chat/completions``: Server-Sent Events when ``"stream": true`` (``: OPENROUTER PROCESSING``
  comments, ``data: {chunk}`` events, usage in the last chunk, ``data: [DONE]``), else one JSON completion;
- ``GET .../models``: an OpenRouter-shaped ``{"data": [...]}`` catalog.

Any path prefix works (``/api/v1/chat/completions``, ``/v1/chat/completions``), so ``base_url`` can stand in
for OpenRouter's or an Ollama server's. Each model id behaves as its ``ModelScript`` says (errors, retries,
stalls, drops, tool calls, malformed chunks, OpenRouter's server-side web search with ``url_citation``
annotations and its price in the usage); models without a script answer deterministically from the
prompt, and return a valid fusion analysis JSON when asked for one. Every request is recorded (headers,
body).

Three ways to run it::

    async with FakeUpstream() as upstream:          # inside a test's event loop
        client = OpenAICompatClient(base_url=upstream.base_url, ...)

    upstream = FakeUpstream()                        # in a thread of its own, for sync tests and subprocesses
    base_url = upstream.start_in_thread()
    ...
    upstream.stop()

    python -m tests.fakes.upstream --port 8765      # by hand

Every data chunk carries ``x_sent_at`` (the server's ``time.time()`` when it wrote the chunk), so a benchmark
can measure how long a token takes from upstream to a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_WORD = re.compile(r"\s*\S+\s*")
# Model ids as a judge prompt shows them: "vendor/model", "~vendor/model-latest", "name/model:variant".
# The look-behind keeps "example.com/page" inside a URL from counting as a model.
_MODEL_ID = re.compile(r"(?<![\w./:~-])~?[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*(?::[a-z0-9._-]+)?", re.I)
_ANALYSIS_KEYS = ("consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots")
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class ModelScript:
    """How one model id behaves. Counts (``*_after``) are in streamed content chunks."""

    # The answer; None: a deterministic answer made from the prompt (or an analysis, when one is asked for).
    text: str | None = None
    # Sent as JSON text instead of ``text`` (a judge's analysis, say).
    reply_json: Any = None
    reasoning: str | None = None
    # Seconds before the first token (comments keep the connection alive meanwhile when ``comments``).
    latency_s: float = 0.0
    # Pace of the answer; None: as fast as the socket takes it.
    tokens_per_s: float | None = None
    # Words per content chunk.
    chunk_words: int = 1
    # The answer's content chunks as given, instead of ``text`` cut into words: a chunk may end anywhere
    # (inside a tag, an entity, a Markdown marker), as a real model's tokens do.
    pieces: list[str] | None = None
    comments: bool = True
    # The ``model`` field of the chunks (OpenRouter names the model that answered); default: the request's.
    served_model: str | None = None
    finish_reason: str = "stop"
    # Overrides for the usage object; ``cost`` in USD (omitted from usage when None).
    usage: dict[str, Any] | None = None
    cost: float | None = None
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    send_usage: bool = True
    # An HTTP error instead of an answer (for every request, or only the first ``fail_times``).
    error_status: int | None = None
    error_message: str = "Upstream error"
    retry_after: str | float | None = None
    fail_times: int | None = None
    # Failures after ``K`` content chunks.
    error_mid_stream_after: int | None = None
    stall_after: int | None = None
    # Pauses before content chunk K until its event is set (from any thread): the test decides when the
    # stream moves on, so "still running" is a fact rather than a race against the model's pace.
    holds: dict[int, threading.Event] = field(default_factory=dict)
    malformed_after: int | None = None
    drop_after: int | None = None
    # Tool calls the model makes: [{"name": "web_search", "arguments": {...} or "json", "id": optional}].
    tool_calls: list[dict[str, Any]] | None = None
    # End the response cleanly after K chunks, with no finish_reason and no ``[DONE]``.
    end_after: int | None = None
    # Skip ``data: [DONE]`` at the end (some servers only close the stream).
    send_done: bool = True
    # Answer with one JSON completion even when asked to stream (some servers do).
    ignore_stream: bool = False
    # OpenRouter's server-side web search: when the request offers ``openrouter:web_search`` in its
    # ``tools``, the answer cites these pages ([{"url", "title", "content"?}]) as ``url_citation``
    # annotations (in a delta after content chunk ``citations_after``, default after the last; in
    # ``message.annotations`` when not streamed), and its usage counts ``searches`` with their price:
    # ``server_tool_use.web_search_requests`` and ``cost`` = ``cost`` (0 when None) + searches * price.
    # A request without the tool gets neither (the model could not search).
    citations: list[dict[str, Any]] | None = None
    citations_after: int | None = None
    searches: int = 1
    search_price: float = 0.005


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    received_at: float = field(default_factory=time.time)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None


ScriptSource = ModelScript | list[ModelScript] | Callable[[RecordedRequest], ModelScript]


def default_models() -> list[dict[str, Any]]:
    """A tiny OpenRouter-shaped catalog for ``GET /models``."""
    return [
        {
            "id": "fake/fast",
            "name": "Fake: Fast",
            "context_length": 32768,
            "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0"},
            "supported_parameters": ["max_tokens", "temperature", "tools", "response_format"],
        },
        {
            "id": "fake/unpriced",
            "name": "Fake: Unpriced",
            "context_length": None,
            "pricing": {"prompt": "-1", "completion": "not a number"},
            "supported_parameters": [],
        },
    ]


class FakeUpstream:
    """The server. Configure it with ``script(model, ...)``; read ``requests`` afterwards."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path_prefix: str = "/api/v1",
        scripts: dict[str, ScriptSource] | None = None,
        default: ModelScript | None = None,
        require_key: str | None = None,
        models: list[dict[str, Any]] | None = None,
        comment_interval_s: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self.path_prefix = path_prefix.rstrip("/")
        self.scripts: dict[str, ScriptSource] = dict(scripts or {})
        self.default = default or ModelScript()
        self.require_key = require_key
        self.models = models if models is not None else default_models()
        # Make ``GET /models`` fail with this status (catalog fallback tests).
        self.models_status = 200
        self.comment_interval_s = comment_interval_s
        self.requests: list[RecordedRequest] = []
        self.active_streams = 0
        self.max_active_streams = 0
        self.connections_opened = 0
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- configuration and inspection ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path_prefix}"

    def script(self, model: str, script: ScriptSource) -> None:
        """Set how ``model`` behaves: a script, a list (one per request, the last repeating) or a callable."""
        self.scripts[model] = script

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start_in_thread(self) -> str:
        """Serve from a daemon thread with its own loop; returns ``base_url``. ``stop()`` ends it."""
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None

    # --- HTTP/1.1 ---------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_opened += 1
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                keep_alive = request.headers.get("connection", "").lower() != "close"
                self.requests.append(request)
                if not await self._respond(request, writer):
                    break
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
        raw = await reader.readexactly(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        return RecordedRequest(
            method=method, path=path.split("?", 1)[0], headers=headers, body=body, raw_body=raw
        )

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _respond(self, request: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close (a deliberate drop)."""
        if (
            self.require_key is not None
            and request.headers.get("authorization") != f"Bearer {self.require_key}"
        ):
            await self._send_json(writer, 401, _error_body(401, "No auth credentials found"))
            return True
        if request.method == "GET" and request.path.endswith("/models"):
            if self.models_status != 200:
                await self._send_json(
                    writer, self.models_status, _error_body(self.models_status, "models unavailable")
                )
            else:
                await self._send_json(writer, 200, {"data": self.models})
            return True
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            await self._send_json(writer, 404, _error_body(404, f"Not found: {request.path}"))
            return True
        if not isinstance(request.body, dict) or not isinstance(request.body.get("model"), str):
            await self._send_json(writer, 400, _error_body(400, "Invalid JSON body: 'model' is required"))
            return True
        model = request.body["model"]
        self._counts[model] += 1
        script = self._script_for(model, request)
        if script.error_status is not None and (
            script.fail_times is None or self._counts[model] <= script.fail_times
        ):
            headers = {} if script.retry_after is None else {"Retry-After": str(script.retry_after)}
            await self._send_json(
                writer, script.error_status, _error_body(script.error_status, script.error_message), headers
            )
            return True
        answer = _Answer.build(script, request)
        if request.body.get("stream") and not script.ignore_stream:
            self.active_streams += 1
            self.max_active_streams = max(self.max_active_streams, self.active_streams)
            try:
                return await self._stream(writer, script, answer)
            finally:
                self.active_streams -= 1
        if script.latency_s:
            await asyncio.sleep(script.latency_s)
        await self._send_json(writer, 200, answer.completion())
        return True

    def _script_for(self, model: str, request: RecordedRequest) -> ModelScript:
        source = self.scripts.get(model, self.default)
        if callable(source):
            return source(request)
        if isinstance(source, list):
            return source[min(self._counts[model], len(source)) - 1]
        return source

    async def _stream(self, writer: asyncio.StreamWriter, script: ModelScript, answer: _Answer) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

        async def send(text: str) -> None:
            data = text.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        async def event(chunk: dict[str, Any]) -> None:
            await send(f"data: {json.dumps({**chunk, 'x_sent_at': time.time()})}\n\n")

        if script.comments:
            await send(": OPENROUTER PROCESSING\n\n")
        waited = 0.0
        while waited < script.latency_s:
            step = min(self.comment_interval_s, script.latency_s - waited)
            await asyncio.sleep(step)
            waited += step
            if script.comments and waited < script.latency_s:
                await send(": OPENROUTER PROCESSING\n\n")
        pause = 0.0 if not script.tokens_per_s else script.chunk_words / script.tokens_per_s
        if answer.reasoning:
            await event(answer.chunk({"role": "assistant", "content": "", "reasoning": answer.reasoning}))
        for index, piece in enumerate(answer.pieces):
            if index == script.end_after:
                await send("")
                return True
            if index == script.drop_after:
                writer.transport.abort()
                return False
            if index == script.stall_after:
                await asyncio.Event().wait()
            if (hold := script.holds.get(index)) is not None:
                # Polled: the event may be set from the test's thread while this loop runs in another.
                while not hold.is_set():
                    await asyncio.sleep(0.005)
            if index == script.malformed_after:
                await send('data: {"id": "gen-broken", "choices": [{"delta": {"content": "x\n\n')
            if index == script.error_mid_stream_after:
                await event(answer.error_chunk())
                await send("data: [DONE]\n\n")
                await send("")
                return True
            if pause and index:
                await asyncio.sleep(pause)
            await event(answer.chunk({"role": "assistant", "content": piece}))
            if answer.annotations and index == script.citations_after:
                await event(answer.citations_chunk())
        after = script.citations_after
        if answer.annotations and (after is None or after >= len(answer.pieces)):
            await event(answer.citations_chunk())
        for position, call in enumerate(answer.tool_calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            name = call["function"]["name"]
            opening = {"index": position, "id": call["id"], "type": "function"}
            await event(
                answer.chunk(
                    {"tool_calls": [{**opening, "function": {"name": name, "arguments": args[:half]}}]}
                )
            )
            rest = {"index": position, "function": {"arguments": args[half:]}}
            await event(answer.chunk({"tool_calls": [rest]}))
        await event(answer.chunk({"role": "assistant", "content": ""}, finish_reason=answer.finish_reason))
        if script.send_usage:
            await event({**answer.chunk_base(), "choices": [], "usage": answer.usage()})
        if script.send_done:
            await send("data: [DONE]\n\n")
        await send("")  # the last chunk of the chunked encoding: the response is complete
        return True


def _error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "metadata": {}}}


@dataclass
class _Answer:
    """One reply, worked out from a script and a request."""

    request_model: str
    served_model: str
    pieces: list[str]
    reasoning: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    prompt_tokens: int
    script: ModelScript
    created: int = field(default_factory=lambda: int(time.time()))
    # ``url_citation`` annotations, when the request offered OpenRouter's web search and the script cites.
    annotations: list[dict[str, Any]] = field(default_factory=list)
    searched: bool = False

    @classmethod
    def build(cls, script: ModelScript, request: RecordedRequest) -> _Answer:
        body = request.body
        model = body["model"]
        if script.reply_json is not None:
            text = json.dumps(script.reply_json)
        elif script.text is not None:
            text = script.text
        elif script.tool_calls:
            text = ""
        else:
            text = default_reply(body)
        if script.pieces is not None:
            pieces = list(script.pieces)
        else:
            pieces = ["".join(group) for group in _chunks(_WORD.findall(text), max(1, script.chunk_words))]
        calls = [
            {
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call["arguments"], str)
                    else json.dumps(call["arguments"]),
                },
            }
            for index, call in enumerate(script.tool_calls or [])
        ]
        prompt_words = sum(
            len(str(message.get("content") or "").split())
            for message in body.get("messages", [])
            if isinstance(message, dict)
        )
        searched = script.citations is not None and offers_server_tool(body, "openrouter:web_search")
        annotations = [
            {
                "type": "url_citation",
                "url_citation": {
                    "url": cited["url"],
                    "title": cited.get("title", ""),
                    "content": cited.get("content", ""),
                    "start_index": 0,
                    "end_index": len("".join(pieces)),
                },
            }
            for cited in ((script.citations or []) if searched else [])
        ]
        return cls(
            request_model=model,
            served_model=script.served_model or model,
            pieces=pieces,
            reasoning=script.reasoning,
            tool_calls=calls,
            finish_reason="tool_calls" if calls and script.finish_reason == "stop" else script.finish_reason,
            prompt_tokens=prompt_words + 4,
            script=script,
            annotations=annotations,
            searched=searched,
        )

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def chunk_base(self) -> dict[str, Any]:
        return {
            "id": "gen-" + hashlib.sha256(f"{self.request_model}{self.created}".encode()).hexdigest()[:20],
            "provider": "FakeUpstream",
            "model": self.served_model,
            "object": "chat.completion.chunk",
            "created": self.created,
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": delta,
            "finish_reason": finish_reason,
            "native_finish_reason": finish_reason,
        }
        return {**self.chunk_base(), "choices": [choice]}

    def citations_chunk(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": "", "annotations": self.annotations})

    def error_chunk(self) -> dict[str, Any]:
        return {
            **self.chunk_base(),
            "error": {"code": "server_error", "message": self.script.error_message},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }

    def usage(self) -> dict[str, Any]:
        completion = len(self.pieces) * max(1, self.script.chunk_words) + self.script.reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens_details": {"reasoning_tokens": self.script.reasoning_tokens},
            "prompt_tokens_details": {"cached_tokens": self.script.cached_tokens},
        }
        if self.script.cost is not None:
            usage["cost"] = self.script.cost
        if self.searched:
            searches = self.script.searches
            usage["server_tool_use"] = {"web_search_requests": searches}
            usage["cost"] = (self.script.cost or 0.0) + searches * self.script.search_price
        usage.update(self.script.usage or {})
        return usage

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.reasoning:
            message["reasoning"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.annotations:
            message["annotations"] = self.annotations
        return {
            **self.chunk_base(),
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage(),
        }


def _chunks(words: list[str], size: int) -> list[list[str]]:
    return [words[i : i + size] for i in range(0, len(words), size)]


def offers_server_tool(body: dict[str, Any], kind: str) -> bool:
    """Whether a request's ``tools`` include one of OpenRouter's server tools (``openrouter:web_search``)."""
    tools = body.get("tools")
    offered = tools if isinstance(tools, list) else []
    return any(isinstance(tool, dict) and tool.get("type") == kind for tool in offered)


def wants_analysis(body: dict[str, Any]) -> bool:
    """Whether a request asks for the fusion analysis object (a json_schema response format, or its keys)."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in {"json_schema", "json_object"}:
        return True
    text = " ".join(str(m.get("content") or "") for m in body.get("messages", []) if isinstance(m, dict))
    return all(key in text for key in _ANALYSIS_KEYS)


def default_reply(body: dict[str, Any]) -> str:
    """A deterministic answer: an analysis naming the prompt's models when one is asked for, else prose."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    model = str(body.get("model"))
    if wants_analysis(body):
        return json.dumps(fake_analysis(messages, model))
    prompt = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    topic = " ".join(prompt.split()[:12]) or "the question"
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()
    return (
        f"{model} on {topic}: the short answer depends on the details, so here is a careful one. "
        f"First, the main point holds in most cases. Second, there is a caveat worth checking. "
        f"Reference {digest[:8]}."
    )


def fake_analysis(messages: list[dict[str, Any]], own_model: str) -> dict[str, Any]:
    """A valid analysis object naming every model id that appears in the messages (except the asker's)."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    models = [m.rstrip(".") for m in dict.fromkeys(_MODEL_ID.findall(text)) if m.rstrip(".") != own_model]
    analysis: dict[str, Any] = {
        "consensus": ["The answers agree on the main point."],
        "contradictions": [],
        "partial_coverage": [],
        "unique_insights": [
            {"model": m, "insight": f"{m} adds a caveat the others leave out."} for m in models
        ],
        "blind_spots": ["None of the answers cites a source."],
    }
    if len(models) >= 2:
        analysis["contradictions"] = [
            {
                "topic": "How strong the caveat is",
                "stances": [
                    {"model": models[0], "stance": "It matters in most cases."},
                    {"model": models[1], "stance": "It rarely matters."},
                ],
            }
        ]
        analysis["partial_coverage"] = [{"models": models[:2], "point": "Both mention the caveat."}]
    return analysis


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenRouter-compatible upstream on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--prefix", default="/api/v1")
    parser.add_argument("--tokens-per-s", type=float, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    upstream = FakeUpstream(
        host=args.host,
        port=args.port,
        path_prefix=args.prefix,
        default=ModelScript(tokens_per_s=args.tokens_per_s, latency_s=args.latency),
    )

    async def serve() -> None:
        async with upstream:
            print(f"fake upstream at {upstream.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
