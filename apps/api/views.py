"""``POST /api/v1/chat/completions``, ``POST /api/v1/responses`` and ``GET /api/v1/models``: parse,
authenticate, call, render.

Streaming follows OpenAI: Server-Sent Events, one ``chat.completion.chunk`` per ``data:`` line, closed by
``data: [DONE]``. Fusion progress travels in chunks with empty ``choices`` and a ``fusion_progress`` field;
the last chunk carries ``finish_reason``, ``usage`` and ``fusion``. A failure after the headers went out is
an ``{"error": {...}}`` chunk followed by ``[DONE]`` (OpenAI's client raises it as an ``APIError``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel

from apps.accounts.models import ApiKey
from apps.api.auth import api_key_from, rate_check
from apps.api.body import body_parse
from apps.api.calls import (
    ApiEvent,
    FinishOut,
    FusionOut,
    ProgressOut,
    TextOut,
    ToolCallsOut,
    completion_id,
    usage_out,
)
from apps.api.errors import UNEXPECTED, ApiError
from apps.api.responses import ResponseFold, response_complete, response_events
from apps.api.responses_schemas import ResponsesRequest
from apps.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    ChunkDelta,
    ToolCallOut,
)
from apps.api.selectors import model_list_for
from apps.api.services import completion_plan, completion_run
from apps.providers.registry import gateway_from_settings

logger = logging.getLogger(__name__)


async def _caller(request: HttpRequest, method: str) -> ApiKey:
    if request.method != method:
        raise ApiError(405, f"Use {method} for this endpoint.", code="method_not_allowed")
    key = await api_key_from(request)
    await rate_check(key)
    return key


async def _run(key: ApiKey, body: ChatCompletionRequest) -> AsyncGenerator[ApiEvent, None]:
    """Plan the request (``ApiError`` before anything is sent) and return the events that run it."""
    gateway = gateway_from_settings()
    plan = await database_sync_to_async(completion_plan)(user=key.user, request=body, gateway=gateway)
    return completion_run(user=key.user, plan=plan, gateway=gateway)


def _event_stream(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass chunks on as they come
    return response


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    try:
        key = await _caller(request, "POST")
        body = body_parse(request, ChatCompletionRequest)
        events = await _run(key, body)
        if not body.stream:
            return JsonResponse((await _completion(events, model=body.model)).model_dump(mode="json"))
        # The first event decides the status: a failure before it is a plain error response.
        first = await anext(aiter(events))
    except ApiError as error:
        return error.response()
    except Exception:
        logger.exception("chat completion failed")
        return UNEXPECTED.response()
    return _event_stream(_sse(first, events, model=body.model))


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """OpenAI's Responses API over the same runs (``apps/api/responses.py``)."""
    try:
        key = await _caller(request, "POST")
        body = body_parse(request, ResponsesRequest)
        events = await _run(key, body.chat_request())
        fold = ResponseFold(body, streaming=body.stream)
        if not body.stream:
            return JsonResponse(await response_complete(fold, events))
        first = await anext(aiter(events))
    except ApiError as error:
        return error.response()
    except Exception:
        logger.exception("response failed")
        return UNEXPECTED.response()
    return _event_stream(response_events(fold, first, events))


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    try:
        key = await _caller(request, "GET")
    except ApiError as error:
        return error.response()
    gateway = gateway_from_settings()
    available = await gateway.aavailable_models()
    listing = await database_sync_to_async(model_list_for)(user=key.user, gateway=gateway, models=available)
    return JsonResponse(listing.model_dump(mode="json"))


async def _completion(events: AsyncIterator[ApiEvent], *, model: str) -> ChatCompletion:
    parts: list[str] = []
    calls: list[ToolCallOut] = []
    finish: FinishOut | None = None
    async for event in events:
        if isinstance(event, TextOut):
            parts.append(event.text)
        elif isinstance(event, ToolCallsOut):
            calls.extend(call.model_copy(update={"index": None}) for call in event.calls)
        elif isinstance(event, FinishOut):
            finish = event
    if finish is None:  # a run that ended without saying how is a defect of ours, not the caller's
        raise ApiError(502, "The run ended without an answer.", code="unexpected_error")
    text = "".join(parts)
    return ChatCompletion(
        id=completion_id(),
        created=int(time.time()),
        model=model,
        choices=[
            Choice(
                message=AssistantMessage(
                    content=text if text or not calls else None, tool_calls=calls or None
                ),
                finish_reason=finish.reason,
            )
        ],
        usage=usage_out(finish.usage),
        fusion=finish.fusion.for_caller() if finish.fusion is not None else None,
    )


def _data(payload: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(payload, BaseModel):
        text = payload.model_dump_json(exclude_none=True)
    else:
        text = json.dumps(payload)
    return f"data: {text}\n\n".encode()


async def _sse(
    first: ApiEvent, events: AsyncGenerator[ApiEvent, None], *, model: str
) -> AsyncIterator[bytes]:
    ident, created = completion_id(), int(time.time())

    def chunk(choices: list[ChunkChoice], **extra: Any) -> bytes:
        return _data(ChatCompletionChunk(id=ident, created=created, model=model, choices=choices, **extra))

    yield chunk([ChunkChoice(delta=ChunkDelta(role="assistant", content=""))])
    async with contextlib.aclosing(events):
        try:
            event: ApiEvent | None = first
            while event is not None:
                if isinstance(event, TextOut):
                    yield chunk([ChunkChoice(delta=ChunkDelta(content=event.text))])
                elif isinstance(event, ToolCallsOut):
                    yield chunk([ChunkChoice(delta=ChunkDelta(tool_calls=event.calls))])
                elif isinstance(event, ProgressOut):
                    yield chunk([], fusion_progress=event.payload)
                elif isinstance(event, FusionOut):
                    pass  # the last chunk carries the result
                else:
                    yield chunk(
                        [ChunkChoice(delta=ChunkDelta(), finish_reason=event.reason)],
                        usage=usage_out(event.usage),
                        fusion=event.fusion.for_caller() if event.fusion is not None else None,
                    )
                event = await anext(aiter(events), None)
        except ApiError as error:
            yield _data(error.body().model_dump(mode="json"))
        except Exception:
            logger.exception("chat completion stream failed")
            yield _data(UNEXPECTED.body())
    yield b"data: [DONE]\n\n"
