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

from collections.abc import AsyncGenerator

from apps.api.calls import (
    ApiEvent,
    CallResult,
    FinishOut,
    TextOut,
    ToolCallsOut,
    last_user_index,
    model_call,
    provider_messages,
)
from apps.api.errors import ApiError
from apps.api.fusion_runs import fusion_model_run
from apps.api.plans import ApiPanelChoice, Plan, User
from apps.api.schemas import FUSION_TOOL_NAME, ChatCompletionRequest, FusionPlugin, tool_choice_name
from apps.api.selectors import fusion_slug, panel_default, panel_find
from apps.api.server_tool import tool_run
from apps.fusion.calls import usage_priced
from apps.providers.base import CompletionRequest, ModelGateway, UnknownModelError

# --- the plan: what a request asks for, checked before anything runs ------------------------------------


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
        if not request.messages or last_user_index(request.messages) is None:
            raise ApiError(400, "The fusion model needs a user message to answer.", param="messages")
        return Plan(
            mode="fusion", model=request.model, request=request, choice=_choice(user, slug, plugin, gateway)
        )
    model = _model_check(gateway, request.model)
    wants_tool = request.has_fusion_tool or plugin is not None
    if not wants_tool or (plugin is not None and not plugin.enabled) or request.tool_choice == "none":
        return Plan(mode="plain", model=model, request=request)
    return Plan(mode="tool", model=model, request=request, choice=_choice(user, None, plugin, gateway))


def _choice(
    user: User, slug: str | None, plugin: FusionPlugin | None, gateway: ModelGateway
) -> ApiPanelChoice:
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


def panel_choose(*, user: User, slug: str | None, plugin: FusionPlugin | None) -> ApiPanelChoice:
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
        return ApiPanelChoice(snapshot=snapshot, panel=panel, label=label)
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
    if plugin.tools is not None:
        options["web_tools"] = bool(plugin.tools)
    snapshot["options"] = options
    if changed:
        # No saved panel is what ran: the turn keeps the frozen copy only.
        snapshot.update(panel_id=None, name=f"{panel.name} (customised by the API)", slug="")
        return ApiPanelChoice(snapshot=snapshot, panel=None, label=f"{label}+plugin")
    return ApiPanelChoice(snapshot=snapshot, panel=panel, label=label)


# --- plain calls and the entry point ---------------------------------------------------------------------


async def plain_run(*, plan: Plan, gateway: ModelGateway) -> AsyncGenerator[ApiEvent, None]:
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


def completion_run(*, user: User, plan: Plan, gateway: ModelGateway) -> AsyncGenerator[ApiEvent, None]:
    """The events of a planned request (see the module docstring)."""
    if plan.mode == "fusion":
        return fusion_model_run(user=user, plan=plan, gateway=gateway)
    if plan.mode == "tool":
        return tool_run(user=user, plan=plan, gateway=gateway)
    return plain_run(plan=plan, gateway=gateway)
