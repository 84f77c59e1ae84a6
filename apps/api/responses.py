"""``POST /api/v1/responses`` rendered from the same output events as chat completions.

``ResponseFold`` turns ``TextOut`` / ``ToolCallsOut`` / ``ProgressOut`` / ``FusionOut`` / ``FinishOut`` into a
Responses API ``response`` object and, when streaming, into its events, each with its ``sequence_number``:
``response.created``, ``response.in_progress``; per message ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``; then ``response.completed`` (or
``response.incomplete`` when the output limit cut the answer).

A fusion run is an ``openrouter:fusion`` output item before the answer, and its progress the events
OpenRouter documents: ``response.fusion_call.in_progress``, ``response.fusion_call.panel.added`` /
``.panel.completed`` / ``.panel.failed`` (with ``model``, the error text and ``status_code``),
``response.fusion_call.analysis.in_progress`` / ``.analysis.completed``, ``response.fusion_call.completed``;
with ``fusion: {"stream_panel": true}`` also ``.panel.delta`` and ``.panel.reasoning.delta``. Ours besides:
``seat`` on every panel event (the same model may sit twice), ``offset`` on deltas, and the events
``.panel.tool_call``, ``.panel.tool_result`` and ``.analysis.failed``. A failed seat's error text is in
``message``: the openai SDK ends a stream at any event that has a top-level ``error``.

A failure once the stream has started is OpenAI's pair: an ``error`` event, then ``response.failed`` whose
``response.error`` says why (with our ``failure_reason``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from apps.api.calls import ApiEvent, FinishOut, FusionOut, ProgressOut, TextOut, ToolCallsOut
from apps.api.errors import UNEXPECTED, ApiError
from apps.api.responses_schemas import (
    FunctionCallItem,
    FusionItem,
    MessageItem,
    OutputItem,
    OutputText,
    ResponseErrorOut,
    ResponseObject,
    ResponsesRequest,
    ResponsesUsage,
)
from apps.api.schemas import FusionResult, ToolCallOut
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
    RunStarted,
    SeatDelta,
    SeatDone,
    SeatFailed,
    SeatReasoningDelta,
    SeatStarted,
    SeatToolCall,
    SeatToolResult,
)
from apps.providers.base import Usage

logger = logging.getLogger(__name__)

FUSION_EVENT = "response.fusion_call"


def response_id() -> str:
    return f"resp_{secrets.token_hex(24)}"


def usage_responses(usage: Usage) -> ResponsesUsage:
    return ResponsesUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details={"cached_tokens": usage.cached_tokens},
        output_tokens=usage.completion_tokens,
        output_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        cost=usage.cost,
    )


class ResponseFold:
    """One response being built: its output items and, when ``streaming``, the events not yet sent."""

    def __init__(self, request: ResponsesRequest, *, streaming: bool) -> None:
        self.request = request
        self.streaming = streaming
        self.response = ResponseObject(
            id=response_id(),
            created_at=int(time.time()),
            status="in_progress",
            model=request.model,
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            temperature=request.temperature,
            tool_choice=request.tool_choice or "auto",
            tools=request.tools_echo(),
            metadata=request.metadata or {},
            user=request.user,
        )
        if request.text is not None:
            self.response.text = request.text.model_dump(by_alias=True, exclude_none=True)
        self.finished = False
        self._sequence = 0
        self._pending: list[bytes] = []
        self._message: MessageItem | None = None
        self._parts: list[str] = []
        self._fusion: FusionItem | None = None
        self._seat_models: dict[int, str] = {}

    # --- events ----------------------------------------------------------------------------------------

    def _emit(self, kind: str, **fields: Any) -> None:
        if not self.streaming:
            return
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        data = json.dumps(payload, separators=(",", ":"))
        self._pending.append(f"event: {kind}\ndata: {data}\n\n".encode())

    def drain(self) -> list[bytes]:
        pending, self._pending = self._pending, []
        return pending

    def _snapshot(self) -> dict[str, Any]:
        leave_out = {"fusion"} if self.response.fusion is None else None
        return self.response.model_dump(mode="json", exclude=leave_out)

    def start(self) -> None:
        self._emit("response.created", response=self._snapshot())
        self._emit("response.in_progress", response=self._snapshot())

    def _item_add(self, item: OutputItem) -> int:
        self.response.output.append(item)
        index = len(self.response.output) - 1
        self._emit("response.output_item.added", output_index=index, item=item.model_dump(mode="json"))
        return index

    def _item_done(self, item: OutputItem) -> None:
        index = self.response.output.index(item)
        self._emit("response.output_item.done", output_index=index, item=item.model_dump(mode="json"))

    # --- the answer's text -----------------------------------------------------------------------------

    def _text(self, text: str) -> None:
        message = self._message
        if message is None:
            message = self._message = MessageItem(id=f"msg_{secrets.token_hex(24)}", status="in_progress")
            index = self._item_add(message)
            part = OutputText(text="")
            message.content.append(part)
            self._emit(
                "response.content_part.added",
                item_id=message.id,
                output_index=index,
                content_index=0,
                part=part.model_dump(mode="json"),
            )
        self._parts.append(text)
        self._emit(
            "response.output_text.delta",
            item_id=message.id,
            output_index=len(self.response.output) - 1,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _message_close(self, *, incomplete: bool = False) -> None:
        message = self._message
        if message is None:
            return
        self._message = None
        part = message.content[0]
        part.text = "".join(self._parts)
        self._parts = []
        message.status = "incomplete" if incomplete else "completed"
        index = self.response.output.index(message)
        place = {"item_id": message.id, "output_index": index, "content_index": 0}
        self._emit("response.output_text.done", **place, text=part.text, logprobs=[])
        self._emit("response.content_part.done", **place, part=part.model_dump(mode="json"))
        self._item_done(message)

    # --- the fusion call -------------------------------------------------------------------------------

    def _fusion_open(self, extras: dict[str, Any]) -> FusionItem:
        self._message_close()
        item = self._fusion = FusionItem(id=f"fusion_{secrets.token_hex(24)}", status="in_progress")
        index = self._item_add(item)
        self._emit(f"{FUSION_EVENT}.in_progress", item_id=item.id, output_index=index, **extras)
        return item

    def _fusion_event(self, kind: str, **fields: Any) -> None:
        item = self._fusion or self._fusion_open({})
        index = self.response.output.index(item)
        self._emit(f"{FUSION_EVENT}.{kind}", item_id=item.id, output_index=index, **fields)

    def _progress(self, progress: ProgressOut) -> None:
        event, payload = progress.event, progress.payload
        if isinstance(event, RunStarted):
            self._seat_models = {seat.seat: seat.model for seat in event.seats}
            extras = {key: value for key, value in payload.items() if key != "type"}
            self._fusion_open(extras)
        elif isinstance(event, SeatStarted):
            self._fusion_event("panel.added", model=event.model, seat=event.seat)
        elif isinstance(event, SeatDelta | SeatReasoningDelta):
            kind = "panel.delta" if isinstance(event, SeatDelta) else "panel.reasoning.delta"
            model = self._seat_models.get(event.seat, "")
            self._fusion_event(kind, model=model, seat=event.seat, offset=event.offset, delta=event.text)
        elif isinstance(event, SeatDone):
            self._fusion_event("panel.completed", model=event.model, seat=event.seat, content=event.content)
        elif isinstance(event, SeatFailed):
            self._fusion_event(
                "panel.failed",
                model=event.model,
                seat=event.seat,
                message=event.error,
                status_code=event.status_code,
                reason=event.reason,
            )
        elif isinstance(event, SeatToolCall | SeatToolResult):
            kind = "panel.tool_call" if isinstance(event, SeatToolCall) else "panel.tool_result"
            fields = {key: value for key, value in payload.items() if key != "type"}
            self._fusion_event(kind, model=self._seat_models.get(event.seat, ""), **fields)
        elif isinstance(event, AnalysisStarted):
            self._fusion_event("analysis.in_progress", judge_model=event.model)
        elif isinstance(event, AnalysisDone):
            self._fusion_event("analysis.completed", analysis=payload["analysis"])
        elif isinstance(event, AnalysisFailed):
            self._fusion_event("analysis.failed", reason=event.reason, detail=event.detail)

    def _fusion_close(self, result: FusionResult) -> None:
        item = self._fusion
        if item is None:
            return
        self._fusion_event("completed")
        self._fusion = None
        fields = result.for_caller()
        status = fields.pop("status")
        done = FusionItem(id=item.id, status="completed" if status == "ok" else "failed", **fields)
        self.response.output[self.response.output.index(item)] = done
        self._item_done(done)

    # --- the whole -------------------------------------------------------------------------------------

    def apply(self, event: ApiEvent) -> None:
        if isinstance(event, TextOut):
            self._text(event.text)
        elif isinstance(event, ProgressOut):
            self._progress(event)
        elif isinstance(event, FusionOut):
            self._fusion_close(event.result)
        elif isinstance(event, ToolCallsOut):
            self._message_close()
            for call in event.calls:
                self._function_call(call)
        else:
            self._finish(event)

    def _function_call(self, call: ToolCallOut) -> None:
        """A call of the caller's own function, handed back (its arguments are whole: one delta)."""
        item = FunctionCallItem(
            id=f"fc_{secrets.token_hex(24)}",
            call_id=call.id,
            name=call.function.name,
            arguments="",
            status="in_progress",
        )
        index = self._item_add(item)
        item.arguments, item.status = call.function.arguments, "completed"
        place = {"item_id": item.id, "output_index": index}
        self._emit("response.function_call_arguments.delta", **place, delta=item.arguments)
        self._emit("response.function_call_arguments.done", **place, name=item.name, arguments=item.arguments)
        self._item_done(item)

    def _finish(self, finish: FinishOut) -> None:
        incomplete = finish.reason == "length"
        self._message_close(incomplete=incomplete)
        if finish.fusion is not None:
            self._fusion_close(finish.fusion)
        response = self.response
        response.usage = usage_responses(finish.usage)
        response.fusion = finish.fusion.for_caller() if finish.fusion is not None else None
        response.completed_at = int(time.time())
        if incomplete:
            response.status = "incomplete"
            response.incomplete_details = {"reason": "max_output_tokens"}
        else:
            response.status = "completed"
        self.finished = True
        self._emit(f"response.{response.status}", response=self._snapshot())

    def fail(self, error: ApiError) -> None:
        """The run failed after the stream started: OpenAI's ``error`` event, then ``response.failed``."""
        self._message_close(incomplete=True)
        if self._fusion is not None:
            self._fusion.status = "incomplete"
            self._item_done(self._fusion)
            self._fusion = None
        code = error.code or "server_error"
        self._emit(
            "error",
            code=code,
            message=error.message,
            param=error.param,
            failure_reason=error.failure_reason,
        )
        response = self.response
        response.status = "failed"
        response.error = ResponseErrorOut(
            code=code, message=error.message, failure_reason=error.failure_reason
        )
        self._emit("response.failed", response=self._snapshot())


async def response_complete(fold: ResponseFold, events: AsyncIterator[ApiEvent]) -> dict[str, Any]:
    """The whole response object (not streamed)."""
    async for event in events:
        fold.apply(event)
    if not fold.finished:  # a run that ended without saying how is a defect of ours, not the caller's
        raise ApiError(502, "The run ended without an answer.", code="unexpected_error")
    return fold.response.model_dump(mode="json", exclude_none=False)


async def response_events(
    fold: ResponseFold, first: ApiEvent, events: AsyncGenerator[ApiEvent, None]
) -> AsyncIterator[bytes]:
    """The response's Server-Sent Events; closing this closes ``events`` (which cancels a fusion run)."""
    fold.start()
    async with contextlib.aclosing(events):
        try:
            event: ApiEvent | None = first
            while event is not None:
                fold.apply(event)
                for chunk in fold.drain():
                    yield chunk
                event = await anext(aiter(events), None)
            if not fold.finished:
                raise ApiError(502, "The run ended without an answer.", code="unexpected_error")
        except ApiError as error:
            fold.fail(error)
        except Exception:
            logger.exception("response stream failed")
            fold.fail(UNEXPECTED)
    for chunk in fold.drain():
        yield chunk
