"""Fusion as a server tool: the outer model sees a ``fusion`` function and decides.

``tool_choice: "required"`` (or naming fusion) forces it; a model that cannot call tools at all (the demo
models) gets fusion run on the last user message. The pipeline stops after the analysis, its result object
goes back to the outer model as the tool result, and the outer model writes the answer. One fusion call per
request; another gets ``failure_reason: "fusion_invocation_capped"``. A call to one of the caller's own
functions is handed back to the caller, ``finish_reason: "tool_calls"``, as any model would.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apps.api.calls import (
    ApiEvent,
    CallResult,
    FinishOut,
    FusionOut,
    ProgressOut,
    TextOut,
    ToolCallsOut,
    conversation_parts,
    model_call,
    provider_messages,
)
from apps.api.errors import ApiError
from apps.api.fusion_runs import fusion_start, recording, run_failed_error
from apps.api.schemas import FUSION_TOOL_NAME, FunctionCallOut, FusionResult, ToolCallOut, tool_choice_name
from apps.fusion.calls import usage_priced
from apps.fusion.engine import run_fusion, totals_build
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    FinalDelta,
    FinalDone,
    FinalStarted,
    RunDone,
    RunFailed,
    SeatDelta,
    SeatReasoningDelta,
    StepStats,
    Timings,
)
from apps.providers.base import ChatMessage, CompletionRequest, ModelGateway, Usage
from apps.webtools.toolbox import toolbox_from_settings

if TYPE_CHECKING:
    from apps.api.plans import Plan, User

# Outer-model calls per request in server-tool mode: the call that may ask for fusion, the one that reads
# its result, and room for one capped repeat. The last one is made with tool_choice "none".
MAX_OUTER_CALLS = 4

FUSION_FUNCTION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": FUSION_TOOL_NAME,
        "description": (
            "Ask a panel of several language models the same question. Returns each model's answer and an "
            "analyst's comparison of them (consensus, contradictions, partial coverage, unique insights, "
            "blind spots). Use it for questions where independent answers and their disagreements help."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "prompt": {
                    "type": "string",
                    "description": "The question, self-contained: the panel sees nothing else.",
                }
            },
            "required": ["prompt"],
        },
    },
}


@dataclass
class FusionCall:
    """The outer model asked for fusion (or was made to): run it, then resume the session."""

    call_id: str
    prompt: str


@dataclass
class ToolSession:
    """One server-tool request: the outer model's conversation, what it has cost, how it ended."""

    plan: Plan
    gateway: ModelGateway
    messages: list[ChatMessage]
    tools: list[dict[str, Any]]
    usage: Usage = field(default_factory=lambda: Usage(cost=0.0))
    steps: list[StepStats] = field(default_factory=list)
    fusion_used: bool = False
    result: FusionResult | None = None
    fusion_usage: Usage = field(default_factory=lambda: Usage(cost=0.0))
    caller_calls: list[ToolCallOut] = field(default_factory=list)
    finish_reason: str = "stop"
    error: ApiError | None = None

    @property
    def forced(self) -> bool:
        choice = self.plan.request.tool_choice
        if choice == "required":
            return True
        return isinstance(choice, dict) and tool_choice_name(choice) == FUSION_TOOL_NAME

    def can_call_tools(self) -> bool:
        return self.gateway.supports_tools(self.plan.model)

    def tool_choice(self, round_: int) -> str | dict[str, Any] | None:
        choice = self.plan.request.tool_choice
        if round_ == MAX_OUTER_CALLS - 1:
            return "none"
        if self.forced:
            return FUSION_FUNCTION_CHOICE if not self.fusion_used else "auto"
        return choice

    def add_tool_result(self, call_id: str, content: dict[str, Any]) -> None:
        self.messages.append(ChatMessage(role="tool", tool_call_id=call_id, content=json.dumps(content)))


FUSION_FUNCTION_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": FUSION_TOOL_NAME}}
CAPPED_RESULT: dict[str, Any] = {
    "status": "error",
    "error": "fusion was already called once in this request",
    "failure_reason": "fusion_invocation_capped",
}


def _call_message(text: str, calls: list[ToolCallOut]) -> ChatMessage:
    return ChatMessage(
        role="assistant",
        content=text or None,
        tool_calls=[call.model_dump(exclude={"index"}) for call in calls],
    )


def _fusion_prompt(arguments: str, fallback: str) -> str:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return fallback
    if isinstance(parsed, dict):
        for key in ("prompt", "question", "query"):
            value = parsed.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return fallback


async def tool_session_turns(session: ToolSession) -> AsyncGenerator[str | FusionCall, None]:
    """The outer model's side of a server-tool request: yields its text, and a ``FusionCall`` the first time
    fusion is wanted (whoever drives it runs fusion and adds the tool result to ``session.messages`` before
    resuming). Ends with ``session.finish_reason`` and, when the caller's tools were called,
    ``session.caller_calls`` set.
    """
    request = session.plan.request
    fallback_prompt, _, _ = conversation_parts(request.messages)
    if session.forced and not session.can_call_tools():
        # A model that cannot call tools is made to: fusion on the last user message, then it answers.
        call = ToolCallOut(
            id=f"call_{secrets.token_hex(8)}",
            function=FunctionCallOut(
                name=FUSION_TOOL_NAME, arguments=json.dumps({"prompt": fallback_prompt})
            ),
        )
        session.messages.append(_call_message("", [call]))
        session.fusion_used = True
        yield FusionCall(call_id=call.id, prompt=fallback_prompt)
    for round_ in range(MAX_OUTER_CALLS):
        result = CallResult()
        completion = CompletionRequest(
            model=session.plan.model,
            messages=session.messages,
            temperature=request.temperature,
            max_tokens=request.completion_limit,
            response_format=request.response_format,
            tools=session.tools,
            tool_choice=session.tool_choice(round_),
        )
        async for text in model_call(gateway=session.gateway, request=completion, result=result):
            yield text
        usage = usage_priced(gateway=session.gateway, model=session.plan.model, progress=result.progress)
        session.usage = session.usage + usage
        session.steps.append(
            StepStats(
                role="writer",
                model=session.plan.model,
                status="done",
                usage=usage,
                timings=result.progress.timings(),
            )
        )
        calls = result.calls()
        if not calls:
            session.finish_reason = result.finish_reason or "stop"
            return
        theirs = [call for call in calls if call.function.name != FUSION_TOOL_NAME]
        if theirs:
            # The caller's own functions run on the caller's side: hand them over, as any model would.
            # A fusion call made alongside them is dropped; the model may ask again once it has their results.
            session.caller_calls = [call.model_copy(update={"index": i}) for i, call in enumerate(theirs)]
            session.finish_reason = "tool_calls"
            return
        session.messages.append(_call_message(result.progress.text, calls))
        for call in calls:
            if session.fusion_used:
                session.add_tool_result(call.id, CAPPED_RESULT)
            else:
                session.fusion_used = True
                yield FusionCall(
                    call_id=call.id, prompt=_fusion_prompt(call.function.arguments, fallback_prompt)
                )
    session.finish_reason = "length"


async def tool_run(*, user: User, plan: Plan, gateway: ModelGateway) -> AsyncGenerator[ApiEvent, None]:
    """The server-tool method (and the plugin on a plain model); see ``tool_session_turns``."""
    assert plan.choice is not None
    request = plan.request
    session = ToolSession(
        plan=plan,
        gateway=gateway,
        messages=provider_messages(request.messages),
        tools=[tool.model_dump(exclude_none=True) for tool in request.function_tools] + [FUSION_FUNCTION],
    )
    turns = tool_session_turns(session)
    async with contextlib.aclosing(turns):
        async for item in turns:
            if isinstance(item, str):
                yield TextOut(item)
                continue
            async for event in _tool_fusion(user=user, session=session, call=item, turns=turns):
                yield event
    if session.caller_calls:
        yield ToolCallsOut(session.caller_calls)
    yield FinishOut(session.finish_reason, session.usage + session.fusion_usage, session.result)


async def _tool_fusion(
    *, user: User, session: ToolSession, call: FusionCall, turns: AsyncIterator[str | FusionCall]
) -> AsyncIterator[ApiEvent]:
    """Run the pipeline for one fusion call, recorded as a turn.

    Once the analysis is in, the engine is closed (the outer model writes the answer, not our writer) and the
    rest of the outer conversation runs inside the recorded run, as the turn's final answer: the chatroom
    shows what the caller got, and the turn's cost is the whole request's. If the pipeline fails (every
    panel model, say), the turn is recorded as failed and the outer model is told so and carries on.
    """
    assert session.plan.choice is not None
    _, history, system = conversation_parts(session.plan.request.messages)
    fold, recorder, request = await fusion_start(
        user=user,
        choice=session.plan.choice,
        gateway=session.gateway,
        prompt=call.prompt,
        history=history,
        system=system,
        stream_panel=session.plan.request.stream_panel,
    )

    def conclude() -> None:
        session.result = fold.result()
        session.fusion_usage = fold.usage
        session.add_tool_result(call.call_id, session.result.for_model())

    async def source() -> AsyncIterator[Any]:
        toolbox = toolbox_from_settings()
        async with contextlib.aclosing(
            run_fusion(request, gateway=session.gateway, toolbox=toolbox)
        ) as engine:
            async for event in engine:
                fold.apply(event)
                yield event
                if isinstance(event, RunFailed):
                    return
                if isinstance(event, AnalysisDone | AnalysisFailed):
                    break
        conclude()
        yield FinalStarted(model=session.plan.model)
        before = len(session.steps)
        parts: list[str] = []
        offset = 0
        try:
            async for item in turns:
                if isinstance(item, str):
                    yield FinalDelta(text=item, offset=offset)
                    parts.append(item)
                    offset += len(item)
        except ApiError as error:
            session.error = error
            fold.steps.extend(session.steps[before:])
            yield RunFailed(
                reason="writer_failed",
                message=error.message,
                partial_final="".join(parts),
                totals=totals_build(steps=fold.steps, started=fold.started),
            )
            return
        outer = session.steps[before:]
        fold.steps.extend(outer)
        yield FinalDone(
            content="".join(parts),
            usage=totals_build(steps=outer, started=fold.started).usage,
            timings=Timings(),
        )
        yield RunDone(totals=totals_build(steps=fold.steps, started=fold.started))

    announced = False
    async with recording(recorder, source()) as events:
        async for event in events:
            if isinstance(event, FinalDelta):
                yield TextOut(event.text)
                continue
            if isinstance(event, SeatDelta | SeatReasoningDelta) and not fold.stream_panel:
                continue
            if isinstance(event, RunFailed):
                fold.apply(event)  # the recorder's own (cancelled, unexpected error) or the source's
            payload = fold.progress(event)
            if payload is not None:
                yield ProgressOut(payload, event)
            if isinstance(event, AnalysisDone | AnalysisFailed):
                # ``source`` folded it already: the result is what the outer model is given.
                announced = True
                yield FusionOut(fold.result())
    if session.error is not None:
        raise session.error
    if session.result is None:
        if fold.failure is not None and fold.failure.reason in ("cancelled", "unexpected_error"):
            raise run_failed_error(fold.failure)
        conclude()
    if not announced and session.result is not None:
        yield FusionOut(session.result)  # the pipeline failed: the outer model is told, and so is the caller
