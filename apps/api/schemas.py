"""The API's wire shapes: OpenAI chat-completions requests and responses, our extensions, and errors.

Requests are parsed leniently where OpenAI clients send fields we do not use (unknown top-level fields are
ignored) and strictly where a mistake would change the result (roles, tool shapes, sizes). Responses are built
from these models so the JSON a client sees always has OpenAI's shape, plus the documented extras:

- ``fusion`` on a completion (and on the last streamed chunk): the fusion result of the run (see
  ``FusionResult``), absent when no fusion ran;
- ``fusion_progress`` on streamed chunks whose ``choices`` is empty: what the run is doing (a seat started,
  a seat finished or failed, the analysis done; with ``fusion: {"stream_panel": true}`` also every seat's
  text and reasoning deltas). OpenAI clients skip chunks without choices.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apps.fusion.schemas import MAX_SEATS

MAX_MESSAGES = 256
MAX_MESSAGE_CHARS = 200_000
MAX_TOOLS = 64
MAX_PLUGINS = 8
MAX_MODEL_ID = 200
FUSION_TOOL_TYPES = frozenset({"fusion", "openrouter:fusion"})
FUSION_TOOL_NAME = "fusion"
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --- requests --------------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text" or self.text is None:
            raise ValueError(f"only text content parts are supported, not {self.type!r}")
        return self


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=64)
    arguments: str = Field(default="", max_length=MAX_MESSAGE_CHARS)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = Field(default=None)
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(default=None, max_length=200)

    @field_validator("content")
    @classmethod
    def _content_size(cls, value: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        if isinstance(value, str) and len(value) > MAX_MESSAGE_CHARS:
            raise ValueError(f"a message may have at most {MAX_MESSAGE_CHARS:,} characters")
        return value

    @model_validator(mode="after")
    def _role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role in ("user", "system", "developer") and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = Field(default=None, max_length=8_000)
    parameters: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _FUNCTION_NAME.match(value):
            raise ValueError("a function name is 1 to 64 letters, digits, '_' or '-'")
        return value


class Tool(BaseModel):
    """A caller's function tool, or the server tool: ``{"type": "fusion"}`` / ``"openrouter:fusion"``, whose
    optional ``parameters`` (as OpenRouter has them) are the plugin's fields."""

    model_config = ConfigDict(extra="allow")

    type: str
    function: FunctionDef | None = None
    parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _known_type(self) -> Tool:
        if self.type == "function":
            if self.function is None:
                raise ValueError("a function tool needs 'function'")
            if self.function.name == FUSION_TOOL_NAME:
                raise ValueError("'fusion' is the name of the server tool: call your function something else")
        elif self.type not in FUSION_TOOL_TYPES:
            raise ValueError(f"unsupported tool type {self.type!r} (use 'function' or 'fusion')")
        elif self.parameters:
            self.fusion_settings()  # a mistake in them is the request's, reported now
        return self

    def fusion_settings(self) -> FusionPlugin | None:
        """The server tool's ``parameters`` read as the fusion plugin (None when it has none)."""
        if not self.is_fusion or not self.parameters:
            return None
        return FusionPlugin.model_validate({**self.parameters, "id": "fusion"})

    @property
    def is_fusion(self) -> bool:
        return self.type in FUSION_TOOL_TYPES


class FusionPlugin(BaseModel):
    """``plugins: [{"id": "fusion", ...}]``: configures the run of the model slug or the server tool."""

    model_config = ConfigDict(extra="ignore")

    id: Literal["fusion"]
    enabled: bool = True
    analysis_models: list[str] | None = Field(default=None, min_length=1, max_length=MAX_SEATS)
    model: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_ID)
    preset: str | None = Field(default=None, min_length=1, max_length=80)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tool_calls: int | None = Field(default=None, ge=1, le=16)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    # The panel's inner tools: ``[]`` turns the web tools off; absent or non-empty leaves them on.
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=8)

    @field_validator("analysis_models")
    @classmethod
    def _model_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not m or len(m) > MAX_MODEL_ID for m in value):
            raise ValueError(f"model ids are 1 to {MAX_MODEL_ID} characters")
        return value


class FusionStreamOptions(BaseModel):
    """``fusion: {...}``: how a fusion run is reported while it streams (ignored without ``stream``).

    ``stream_panel``: every seat's text and reasoning deltas in the progress events (off by default, so a
    client that only wants the answer gets a lean stream). Unknown keys are refused, so a misspelt option
    is not silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    stream_panel: bool = False


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=MAX_MODEL_ID)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    n: int = Field(default=1, ge=1, le=1)
    response_format: dict[str, Any] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    plugins: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_PLUGINS)
    fusion: FusionStreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        names = [tool.function.name for tool in self.tools or [] if tool.function is not None]
        if len(names) != len(set(names)):
            raise ValueError("two tools have the same function name")
        if isinstance(self.tool_choice, dict):
            wanted = tool_choice_name(self.tool_choice)
            if wanted != FUSION_TOOL_NAME and wanted not in names:
                raise ValueError(f"tool_choice names {wanted!r}, which is not among the tools")
        fusion_plugins = [p for p in self.plugins or [] if isinstance(p, dict) and p.get("id") == "fusion"]
        if len(fusion_plugins) > 1:
            raise ValueError("at most one fusion plugin")
        if fusion_plugins:
            FusionPlugin.model_validate(fusion_plugins[0])
        return self

    @property
    def fusion_plugin(self) -> FusionPlugin | None:
        """The fusion plugin, else the server tool's ``parameters`` (OpenRouter's other way to say it)."""
        for plugin in self.plugins or []:
            if isinstance(plugin, dict) and plugin.get("id") == "fusion":
                return FusionPlugin.model_validate(plugin)
        for tool in self.tools or []:
            settings = tool.fusion_settings()
            if settings is not None:
                return settings
        return None

    @property
    def function_tools(self) -> list[Tool]:
        return [tool for tool in self.tools or [] if not tool.is_fusion]

    @property
    def has_fusion_tool(self) -> bool:
        return any(tool.is_fusion for tool in self.tools or [])

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stream_panel(self) -> bool:
        return self.stream and self.fusion is not None and self.fusion.stream_panel


def tool_choice_name(choice: dict[str, Any]) -> str:
    """The tool a dict ``tool_choice`` forces: ``{"type": "function", "function": {"name": ...}}``, or
    ``"fusion"`` for ``{"type": "fusion"}``.
    """
    if choice.get("type") in FUSION_TOOL_TYPES:
        return FUSION_TOOL_NAME
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        raise ValueError("tool_choice must be 'none', 'auto', 'required' or name a function")
    return name


# --- responses -------------------------------------------------------------------------------------------


class UsageOut(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # USD, summed over every model call of the request; None when a price is unknown.
    cost: float | None = None
    prompt_tokens_details: dict[str, int] = Field(default_factory=dict)
    completion_tokens_details: dict[str, int] = Field(default_factory=dict)


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    index: int | None = None
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class PanelResponse(BaseModel):
    model: str
    content: str


class FailedModel(BaseModel):
    model: str
    error: str
    status_code: int | None = None


class Source(BaseModel):
    url: str
    title: str = ""


class FusionResult(BaseModel):
    """The result of one fusion call: the brief's server-tool result object, plus where the run was saved.

    ``status`` is "ok" whenever at least one panel model answered (``failed_models`` lists the others);
    ``analysis`` is omitted when the analyst failed (``analysis_error`` says why). A hard failure is
    ``status: "error"`` with ``error`` and ``failure_reason``.
    """

    status: Literal["ok", "error"]
    analysis: dict[str, Any] | None = None
    analysis_error: str | None = None
    responses: list[PanelResponse] = Field(default_factory=list)
    failed_models: list[FailedModel] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    error: str | None = None
    failure_reason: str | None = None
    # Extras for the API caller (not shown to the outer model).
    demo: bool | None = None
    panel: str | None = None
    conversation_id: int | None = None
    turn_id: int | None = None

    def for_model(self) -> dict[str, Any]:
        """The tool result the outer model reads: the brief's fields only, absent ones left out."""
        return self.model_dump(
            exclude_none=True, exclude={"demo", "panel", "conversation_id", "turn_id", "analysis_error"}
        )

    def for_caller(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut
    system_fingerprint: None = None
    fusion: dict[str, Any] | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None
    fusion: dict[str, Any] | None = None
    fusion_progress: dict[str, Any] | None = None


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    name: str
    demo: bool = False
    context_length: int | None = None
    # For fusion entries: the panel that runs, and why it cannot run here (None when it can).
    fusion: dict[str, Any] | None = None
    unavailable_reason: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | int | None = None
    param: str | None = None
    failure_reason: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
