"""The OpenAI-compatible API's work: one chat-completions request in, a stream of output events out.

Three ways to reach the fusion pipeline, as OpenRouter offers them:

- **model slug**: ``model: "fusion"`` (the default panel) or ``"fusion/<slug>"`` (a preset, by our slug or
  OpenRouter's preset name, or one of the caller's saved panels). The writer's answer is the completion.
- **server tool**: ``tools: [{"type": "fusion"}]`` next to the caller's own function tools. The outer model
  sees a ``fusion`` function and decides; ``tool_choice: "required"`` forces it. The pipeline runs up to the
  analysis, its result object goes back to the outer model as the tool result, and the outer model writes the
  answer. One fusion call per request; another gets ``failure_reason: "fusion_invocation_capped"``.
- **plugin**: ``plugins: [{"id": "fusion", ...}]`` configures either of the above (panel models, analyst,
  preset, options); on a plain model it adds the server tool; ``enabled: false`` makes the request a plain
  call.

Any other model id is a plain call through the same providers. Every fusion run is saved as a conversation of
the key's owner (source "api") through the chat services and its ``TurnRecorder``, so it shows in the
chatroom's history while it runs. ``completion_plan`` checks a request (``ApiError`` 400/404) before anything
is sent; ``completion_run`` yields ``TextOut`` / ``ToolCallsOut`` / ``ProgressOut`` and one ``FinishOut``, or
raises ``ApiError`` (502 when every panel model failed, for instance).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.api.errors import ApiError
from apps.api.schemas import (
    FUSION_TOOL_NAME,
    ChatCompletionRequest,
    FailedModel,
    FunctionCallOut,
    FusionPlugin,
    FusionResult,
    Message,
    PanelResponse,
    ToolCallOut,
    UsageOut,
    tool_choice_name,
)
from apps.api.selectors import fusion_slug, panel_default, panel_find
from apps.chat.recorder import TurnRecorder
from apps.chat.services import ChatError, conversation_create, fusion_request_for, turn_create
from apps.fusion import schemas as ev
from apps.fusion.calls import CallProgress, usage_priced
from apps.fusion.engine import run_fusion, totals_build
from apps.fusion.schemas import FusionRequest, PriorTurn
from apps.panels.models import Panel
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    Finish,
    ModelGateway,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    UnknownModelError,
    Usage,
    UsageReport,
)

User = AbstractBaseUser | AnonymousUser
T = TypeVar("T")

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


# --- output events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextOut:
    text: str


@dataclass(frozen=True)
class ToolCallsOut:
    calls: list[ToolCallOut]


@dataclass(frozen=True)
class ProgressOut:
    payload: dict[str, Any]


@dataclass(frozen=True)
class FinishOut:
    reason: str
    usage: Usage
    fusion: FusionResult | None = None


ApiEvent = TextOut | ToolCallsOut | ProgressOut | FinishOut


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        cost=usage.cost,
        prompt_tokens_details={"cached_tokens": usage.cached_tokens},
        completion_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
    )


@contextlib.asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """Close an async iterator however its consumer stops (``aclose`` cancels the requests it has open)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


# --- the plan: what a request asks for, checked before anything runs ------------------------------------


@dataclass
class PanelChoice:
    """The panel a fusion run uses, as the snapshot the turn freezes."""

    snapshot: dict[str, Any]
    panel: Panel | None
    label: str


@dataclass
class Plan:
    mode: Literal["plain", "fusion", "tool"]
    # The model called directly (plain and tool modes); the requested id in fusion mode.
    model: str
    request: ChatCompletionRequest
    choice: PanelChoice | None = None


def completion_plan(*, user: User, request: ChatCompletionRequest, gateway: ModelGateway) -> Plan:
    """Work out what ``request`` runs; ``ApiError`` 400 for a contradiction, 404 for an unknown model/panel.

    Touches the database (panels): call it through ``database_sync_to_async`` from async code.
    """
    plugin = request.fusion_plugin
    slug = fusion_slug(request.model)
    if slug is not None:
        if plugin is not None and not plugin.enabled:
            model = plugin.model or panel_choose(user=user, slug=slug, plugin=None).snapshot["writer"]
            return Plan(mode="plain", model=_model_check(gateway, model), request=request)
        if not request.messages or _last_user_index(request.messages) is None:
            raise ApiError(400, "The fusion model needs a user message to answer.", param="messages")
        return Plan(
            mode="fusion", model=request.model, request=request, choice=_choice(user, slug, plugin, gateway)
        )
    model = _model_check(gateway, request.model)
    wants_tool = request.has_fusion_tool or plugin is not None
    if not wants_tool or (plugin is not None and not plugin.enabled) or request.tool_choice == "none":
        return Plan(mode="plain", model=model, request=request)
    return Plan(mode="tool", model=model, request=request, choice=_choice(user, None, plugin, gateway))


def _choice(user: User, slug: str | None, plugin: FusionPlugin | None, gateway: ModelGateway) -> PanelChoice:
    choice = panel_choose(user=user, slug=slug or None, plugin=plugin)
    for model in {seat["model"] for seat in choice.snapshot["seats"]} | {
        choice.snapshot["judge"],
        choice.snapshot["writer"],
    }:
        _model_check(gateway, model)
    return choice


def _model_check(gateway: ModelGateway, model: str) -> str:
    try:
        gateway.client_for(model)
    except UnknownModelError as error:
        raise ApiError(
            404,
            f"The model {model!r} does not exist here: {error.message}",
            code="model_not_found",
            param="model",
        ) from None
    return model


def panel_choose(*, user: User, slug: str | None, plugin: FusionPlugin | None) -> PanelChoice:
    """The panel for a run: the model slug's panel, else the plugin's preset, else the default panel; then
    the plugin's explicit ``analysis_models`` (seats) and ``model`` (analyst) win over it, and its options
    are applied. ``ApiError`` 404 for a slug or preset that names no panel the user may use.
    """
    wanted = slug or (plugin.preset if plugin is not None else None)
    if wanted:
        panel = panel_find(user=user, name=wanted)
        if panel is None:
            raise ApiError(
                404,
                f"No panel called {wanted!r}: name a preset (GET /api/v1/models lists them) "
                "or one of your saved panels.",
                code="model_not_found",
                param="model" if slug else "plugins",
            )
    else:
        panel = panel_default(user=user)
    snapshot = panel.snapshot()
    label = f"fusion/{panel.slug}"
    if plugin is None:
        return PanelChoice(snapshot=snapshot, panel=panel, label=label)
    changed = False
    if plugin.analysis_models:
        snapshot["seats"] = [
            {"seat": index, "model": model, "temperature": None, "system_prompt": None}
            for index, model in enumerate(plugin.analysis_models, start=1)
        ]
        changed = True
    if plugin.model:
        snapshot["judge"] = plugin.model
        changed = True
    options = dict(snapshot.get("options") or {})
    for key in ("temperature", "max_tool_calls", "max_completion_tokens"):
        value = getattr(plugin, key)
        if value is not None:
            options[key] = value
    snapshot["options"] = options
    if changed:
        # No saved panel is what ran: the turn keeps the frozen copy only.
        snapshot.update(panel_id=None, name=f"{panel.name} (customised by the API)", slug="")
        return PanelChoice(snapshot=snapshot, panel=None, label=f"{label}+plugin")
    return PanelChoice(snapshot=snapshot, panel=panel, label=label)


# --- messages --------------------------------------------------------------------------------------------


def provider_messages(messages: list[Message]) -> list[ChatMessage]:
    """The caller's messages as our providers take them (``developer`` is a system message to them)."""
    converted = []
    for message in messages:
        converted.append(
            ChatMessage(
                role="system" if message.role == "developer" else message.role,
                content=message.text if message.content is not None else None,
                name=message.name,
                tool_calls=[call.model_dump() for call in message.tool_calls] if message.tool_calls else None,
                tool_call_id=message.tool_call_id,
            )
        )
    return converted


def _last_user_index(messages: list[Message]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def conversation_parts(messages: list[Message]) -> tuple[str, list[PriorTurn], str]:
    """``(prompt, history, system)`` of a conversation for the panel: the last user message is the prompt;
    earlier user messages paired with the assistant's text answers are the history; system and developer
    messages, joined, are the system text.
    """
    last = _last_user_index(messages)
    if last is None:
        raise ApiError(400, "The conversation has no user message.", param="messages")
    system = "\n\n".join(m.text for m in messages if m.role in ("system", "developer") and m.text)
    history: list[PriorTurn] = []
    asked: list[str] = []
    for message in messages[:last]:
        if message.role == "user":
            asked.append(message.text)
        elif message.role == "assistant" and message.text and asked:
            history.append(PriorTurn(prompt="\n\n".join(asked), answer=message.text))
            asked = []
    prompt = "\n\n".join([*asked, messages[last].text]).strip()
    return prompt, history, system


# --- model calls -----------------------------------------------------------------------------------------


@dataclass
class CallResult:
    progress: CallProgress = field(default_factory=CallProgress)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None

    def calls(self) -> list[ToolCallOut]:
        return [
            ToolCallOut(
                index=position,
                id=call["id"] or f"call_{secrets.token_hex(8)}",
                function=FunctionCallOut(name=call["name"], arguments=call["arguments"]),
            )
            for position, (_, call) in enumerate(sorted(self.tool_calls.items()))
        ]


async def model_call(
    *, gateway: ModelGateway, request: CompletionRequest, result: CallResult
) -> AsyncIterator[str]:
    """Stream one model call: yield its text, gather its tool calls, usage and finish reason in ``result``.

    Raises ``ApiError`` for a provider failure.
    """
    progress = result.progress
    try:
        client = gateway.client_for(request.model)
        stream = client.stream(request)
        try:
            async for chunk in stream:
                if isinstance(chunk, TextDelta) and chunk.text:
                    if progress.first_token_at is None:
                        progress.first_token_at = time.perf_counter()
                    progress.parts.append(chunk.text)
                    progress.length += len(chunk.text)
                    yield chunk.text
                elif isinstance(chunk, ToolCallDelta):
                    call = result.tool_calls.setdefault(chunk.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = chunk.id or call["id"]
                    call["name"] = chunk.name or call["name"]
                    call["arguments"] += chunk.arguments
                elif isinstance(chunk, UsageReport):
                    progress.usage = chunk.usage
                elif isinstance(chunk, Finish):
                    result.finish_reason = chunk.reason
        finally:
            progress.ended = time.perf_counter()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
    except ProviderError as error:
        raise provider_api_error(error) from None


def provider_api_error(error: ProviderError) -> ApiError:
    """A provider's failure as the API reports it: the caller's mistakes keep their status, the rest 502."""
    status = error.status_code
    if isinstance(error, UnknownModelError) or status == 404:
        return ApiError(404, error.message, code="model_not_found", param="model")
    if status == 400:
        return ApiError(400, f"The model refused the request: {error.message}", code="upstream_bad_request")
    if status == 429:
        retry = None if error.retry_after is None else max(1, round(error.retry_after))
        return ApiError(
            429,
            f"The model provider is rate limiting: {error.message}",
            code="rate_limited",
            failure_reason="rate_limited",
            retry_after=retry,
        )
    detail = f" ({status})" if status else ""
    return ApiError(
        502,
        f"The model provider failed{detail}: {error.message}",
        code="upstream_error",
        failure_reason="upstream_error",
    )


# --- fusion runs -----------------------------------------------------------------------------------------


class FusionFold:
    """Folds engine events into the brief's result object and the run's step figures."""

    def __init__(self, *, gateway: ModelGateway, choice: PanelChoice) -> None:
        self.choice = choice
        self.responses: dict[int, PanelResponse] = {}
        self.failed: dict[int, FailedModel] = {}
        self.steps: list[ev.StepStats] = []
        self.analysis: dict[str, Any] | None = None
        self.analysis_error: str | None = None
        self.analysed = False
        self.failure: ev.RunFailed | None = None
        self.started = time.perf_counter()
        self.conversation_id: int | None = None
        self.turn_id: int | None = None
        models = [seat["model"] for seat in choice.snapshot["seats"]] + [choice.snapshot["judge"]]
        self.demo = any(gateway.is_demo(model) for model in models)

    def apply(self, event: Any) -> None:
        judge = self.choice.snapshot["judge"]
        if isinstance(event, ev.SeatDone):
            self.responses[event.seat] = PanelResponse(model=event.model, content=event.content)
            self._step("seat", event.model, "done", event.usage, event.timings, seat=event.seat)
        elif isinstance(event, ev.SeatFailed):
            self.failed[event.seat] = FailedModel(
                model=event.model, error=event.error, status_code=event.status_code
            )
            status: Literal["missing", "failed"] = "missing" if event.reason == "missing" else "failed"
            self._step("seat", event.model, status, event.usage, event.timings, seat=event.seat)
        elif isinstance(event, ev.AnalysisDone):
            self.analysed = True
            self.analysis = event.analysis.model_dump()
            self._step("judge", judge, "done", event.usage, event.timings)
        elif isinstance(event, ev.AnalysisFailed):
            self.analysed = True
            self.analysis_error = event.reason
            self._step("judge", judge, "failed", event.usage, event.timings)
        elif isinstance(event, ev.RunFailed):
            self.failure = event

    def progress(self, event: Any) -> dict[str, Any] | None:
        """What the caller is told about ``event`` while streaming (None: nothing)."""
        if isinstance(event, ev.RunStarted):
            return {
                "type": "run.started",
                "panel": self.choice.label,
                "seats": [{"seat": s.seat, "model": s.model} for s in event.seats],
                "judge": event.judge,
                "conversation_id": self.conversation_id,
                "turn_id": self.turn_id,
            }
        if isinstance(event, ev.SeatStarted):
            return {"type": "seat.started", "seat": event.seat, "model": event.model}
        if isinstance(event, ev.SeatDone):
            return {
                "type": "seat.done",
                "seat": event.seat,
                "model": event.model,
                "duration_ms": event.timings.duration_ms,
            }
        if isinstance(event, ev.SeatFailed):
            return {
                "type": "seat.failed",
                "seat": event.seat,
                "model": event.model,
                "reason": event.reason,
                "error": event.error,
                "status_code": event.status_code,
            }
        if isinstance(event, ev.AnalysisStarted):
            return {"type": "analysis.started", "model": event.model}
        if isinstance(event, ev.AnalysisDone):
            return {"type": "analysis.done", "analysis": event.analysis.model_dump()}
        if isinstance(event, ev.AnalysisFailed):
            return {"type": "analysis.failed", "reason": event.reason, "detail": event.detail}
        return None

    def _step(
        self,
        role: Literal["seat", "judge", "writer"],
        model: str,
        status: Literal["done", "failed", "missing", "cancelled"],
        usage: Usage,
        timings: ev.Timings,
        seat: int | None = None,
    ) -> None:
        self.steps.append(
            ev.StepStats(role=role, seat=seat, model=model, status=status, usage=usage, timings=timings)
        )

    @property
    def usage(self) -> Usage:
        return totals_build(steps=self.steps, started=self.started).usage

    def result(self) -> FusionResult:
        extras: dict[str, Any] = {
            "demo": self.demo,
            "panel": self.choice.label,
            "conversation_id": self.conversation_id,
            "turn_id": self.turn_id,
        }
        failed = [self.failed[seat] for seat in sorted(self.failed)]
        if self.failure is not None and not self.analysed:
            reason = self.failure.reason
            error = "all panel models failed" if reason == "all_panels_failed" else self.failure.message
            return FusionResult(
                status="error", error=error, failure_reason=reason, failed_models=failed, **extras
            )
        return FusionResult(
            status="ok",
            analysis=self.analysis,
            analysis_error=self.analysis_error,
            responses=[self.responses[seat] for seat in sorted(self.responses)],
            failed_models=failed,
            **extras,
        )


@database_sync_to_async
def _turn_begin(
    *, user: User, choice: PanelChoice, prompt: str, history: list[PriorTurn], system: str
) -> tuple[int, int, TurnRecorder, FusionRequest]:
    """Save the run's conversation and turn (source "api") and build its engine request."""
    snapshot = choice.snapshot
    if system:
        # The caller's system text reaches every panel model, after the seat's own system prompt if any.
        snapshot = {
            **snapshot,
            "seats": [
                {**seat, "system_prompt": "\n\n".join(p for p in (seat.get("system_prompt"), system) if p)}
                for seat in snapshot["seats"]
            ],
        }
    try:
        conversation = conversation_create(owner=user, source="api")
        turn = turn_create(
            conversation=conversation, prompt=prompt, panel_snapshot=snapshot, panel=choice.panel
        )
    except ChatError as error:
        raise ApiError(400, str(error), param="messages") from None
    request = fusion_request_for(turn=turn)
    # The API is stateless: the conversation so far comes with the request, not from earlier turns.
    request = request.model_copy(update={"history": history})
    return conversation.pk, turn.pk, TurnRecorder(turn=turn), request


async def _fusion_start(
    *,
    user: User,
    choice: PanelChoice,
    gateway: ModelGateway,
    prompt: str,
    history: list[PriorTurn],
    system: str,
) -> tuple[FusionFold, TurnRecorder, FusionRequest]:
    fold = FusionFold(gateway=gateway, choice=choice)
    conversation_id, turn_id, recorder, request = await _turn_begin(
        user=user, choice=choice, prompt=prompt, history=history, system=system
    )
    fold.conversation_id, fold.turn_id = conversation_id, turn_id
    return fold, recorder, request


async def fusion_model_run(*, user: User, plan: Plan, gateway: ModelGateway) -> AsyncIterator[ApiEvent]:
    """The model-slug method: the whole pipeline, the writer's answer as the completion."""
    assert plan.choice is not None
    prompt, history, system = conversation_parts(plan.request.messages)
    fold, recorder, request = await _fusion_start(
        user=user, choice=plan.choice, gateway=gateway, prompt=prompt, history=history, system=system
    )
    async with closing(recorder.record(run_fusion(request, gateway=gateway))) as events:
        async for event in events:
            fold.apply(event)
            payload = fold.progress(event)
            if payload is not None:
                yield ProgressOut(payload)
            if isinstance(event, ev.FinalDelta):
                yield TextOut(event.text)
            elif isinstance(event, ev.RunDone):
                yield FinishOut("stop", event.totals.usage, fold.result())
                return
            elif isinstance(event, ev.RunFailed):
                raise _run_failed_error(event)


def _run_failed_error(event: ev.RunFailed) -> ApiError:
    status = 404 if event.reason == "invalid_model" else 502
    return ApiError(status, event.message, code=event.reason, failure_reason=event.reason)


# --- the server tool -------------------------------------------------------------------------------------


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
    steps: list[ev.StepStats] = field(default_factory=list)
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
        model = self.plan.model
        if self.gateway.is_demo(model):
            return False
        info_for = getattr(self.gateway, "model_info", None)
        info = info_for(model) if info_for is not None else None
        # Unknown models are given the benefit of the doubt: most chat models take tools.
        return info is None or not info.supported_parameters or "tools" in info.supported_parameters

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


async def tool_session_turns(session: ToolSession) -> AsyncIterator[str | FusionCall]:
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
            ev.StepStats(
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


async def tool_run(*, user: User, plan: Plan, gateway: ModelGateway) -> AsyncIterator[ApiEvent]:
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
    async with closing(turns):
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
    fold, recorder, request = await _fusion_start(
        user=user,
        choice=session.plan.choice,
        gateway=session.gateway,
        prompt=call.prompt,
        history=history,
        system=system,
    )

    def conclude() -> None:
        session.result = fold.result()
        session.fusion_usage = fold.usage
        session.add_tool_result(call.call_id, session.result.for_model())

    async def source() -> AsyncIterator[Any]:
        async with closing(run_fusion(request, gateway=session.gateway)) as engine:
            async for event in engine:
                fold.apply(event)
                yield event
                if isinstance(event, ev.RunFailed):
                    return
                if isinstance(event, ev.AnalysisDone | ev.AnalysisFailed):
                    break
        conclude()
        yield ev.FinalStarted(model=session.plan.model)
        before = len(session.steps)
        parts: list[str] = []
        offset = 0
        try:
            async for item in turns:
                if isinstance(item, str):
                    yield ev.FinalDelta(text=item, offset=offset)
                    parts.append(item)
                    offset += len(item)
        except ApiError as error:
            session.error = error
            fold.steps.extend(session.steps[before:])
            yield ev.RunFailed(
                reason="writer_failed",
                message=error.message,
                partial_final="".join(parts),
                totals=totals_build(steps=fold.steps, started=fold.started),
            )
            return
        outer = session.steps[before:]
        fold.steps.extend(outer)
        yield ev.FinalDone(
            content="".join(parts),
            usage=totals_build(steps=outer, started=fold.started).usage,
            timings=ev.Timings(),
        )
        yield ev.RunDone(totals=totals_build(steps=fold.steps, started=fold.started))

    async with closing(recorder.record(source())) as events:
        async for event in events:
            if isinstance(event, ev.FinalDelta):
                yield TextOut(event.text)
                continue
            if isinstance(event, ev.RunFailed):
                fold.apply(event)  # the recorder's own (cancelled, unexpected error) or the source's
            payload = fold.progress(event)
            if payload is not None:
                yield ProgressOut(payload)
    if session.error is not None:
        raise session.error
    if session.result is None:
        if fold.failure is not None and fold.failure.reason in ("cancelled", "unexpected_error"):
            raise _run_failed_error(fold.failure)
        conclude()


# --- plain calls and the entry point ---------------------------------------------------------------------


async def plain_run(*, plan: Plan, gateway: ModelGateway) -> AsyncIterator[ApiEvent]:
    """Any other model id: one call through the same providers, the caller's tools passed through."""
    request = plan.request
    tools = [tool.model_dump(exclude_none=True) for tool in request.function_tools] or None
    choice = request.tool_choice
    if tools is None or (isinstance(choice, dict) and tool_choice_name(choice) == FUSION_TOOL_NAME):
        choice = None
    result = CallResult()
    completion = CompletionRequest(
        model=plan.model,
        messages=provider_messages(request.messages),
        temperature=request.temperature,
        max_tokens=request.completion_limit,
        response_format=request.response_format,
        tools=tools,
        tool_choice=choice,
    )
    async for text in model_call(gateway=gateway, request=completion, result=result):
        yield TextOut(text)
    calls = result.calls()
    if calls:
        yield ToolCallsOut(calls)
    reason = result.finish_reason or ("tool_calls" if calls else "stop")
    yield FinishOut(reason, usage_priced(gateway=gateway, model=plan.model, progress=result.progress))


def completion_run(*, user: User, plan: Plan, gateway: ModelGateway) -> AsyncIterator[ApiEvent]:
    """The events of a planned request (see the module docstring)."""
    if plan.mode == "fusion":
        return fusion_model_run(user=user, plan=plan, gateway=gateway)
    if plan.mode == "tool":
        return tool_run(user=user, plan=plan, gateway=gateway)
    return plain_run(plan=plan, gateway=gateway)
