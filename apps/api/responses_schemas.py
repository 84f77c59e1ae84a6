"""The wire shapes of ``POST /api/v1/responses``: OpenAI's Responses API, as far as this server serves it.

A request is checked here and then turned into the chat-completions request it means
(``ResponsesRequest.chat_request``), so both endpoints plan and run the very same way. What is served:
``model`` (plain models, ``fusion`` / ``fusion/<slug>``); ``input``, a string or a list of items: messages of
the roles ``user``, ``assistant``, ``system`` and ``developer`` whose content is a string or text parts, and
``function_call`` / ``function_call_output`` items (an earlier response's output replayed as it is: its
``openrouter:fusion`` item is dropped, being a record of that run rather than conversation);
``instructions``, ``max_output_tokens``, ``temperature``, ``stream``, ``text.format`` (text, JSON object, JSON
schema), ``tools`` (the server tool and the caller's functions), ``tool_choice``, ``plugins`` and our
``fusion`` stream options.

Refused with a 400 that says why, because ignoring them would change the answer: ``previous_response_id``,
``conversation`` and ``prompt`` (nothing is stored to continue from: send the conversation in ``input``),
``background: true``, built-in tools (``web_search``, ``file_search``, ...), other input items and parts
(images, files). Ignored, as OpenAI ignores what a model does not use: ``store`` (nothing is kept under the
response's id), ``include``, ``reasoning``, ``top_p``, ``truncation``, ``parallel_tool_calls``,
``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options`` and anything unknown.
``metadata`` and ``user`` are echoed back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from apps.api.errors import ApiError, validation_error
from apps.api.schemas import (
    FUSION_TOOL_TYPES,
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_MODEL_ID,
    MAX_PLUGINS,
    MAX_TOOLS,
    ChatCompletionRequest,
    FunctionCall,
    FusionStreamOptions,
    Message,
    Tool,
    ToolCall,
)

# What a caller sends back when it replays a response's output as the next input: our fusion item is a
# record of the run, not part of the conversation, so it is dropped rather than refused.
FUSION_ITEM_TYPE = "openrouter:fusion"


# --- requests --------------------------------------------------------------------------------------------


TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
MAX_PARTS = 256


ITEM_TYPES = ("message", "function_call", "function_call_output")
# What each kind of input item must have.
ITEM_FIELDS = {
    "message": ("role", "content"),
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
}


def _joined_text(value: Any) -> Any:
    """Text parts (``input_text``, or ``output_text`` in an assistant turn replayed) joined as one string."""
    if not isinstance(value, list):
        return value
    if len(value) > MAX_PARTS:
        raise ValueError(f"at most {MAX_PARTS} parts")
    texts = []
    for part in value:
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(text, str):
            raise ValueError(f"only text parts (input_text, output_text) are supported, not {kind!r}")
        texts.append(text)
    return "".join(texts)


class InputItem(BaseModel):
    """One item of ``input``: a message (content a string or text parts), or a function call and its output
    as an earlier response returned them. One flat model, so an error names the field (``input.2.call_id``).
    """

    model_config = ConfigDict(extra="ignore")

    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    call_id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=64)
    arguments: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    output: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)

    @field_validator("type", mode="before")
    @classmethod
    def _known_item(cls, value: Any) -> Any:
        if value not in ITEM_TYPES:
            raise ValueError(
                "only message (roles user, assistant, system, developer), function_call and "
                f"function_call_output items are supported, not {value!r}"
            )
        return value

    _content_text = field_validator("content", "output", mode="before")(_joined_text)

    @model_validator(mode="after")
    def _complete(self) -> InputItem:
        missing = [name for name in ITEM_FIELDS[self.type] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.type} item needs {' and '.join(missing)}")
        return self


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(default=None, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = Field(default=None, max_length=8_000)

    def response_format(self) -> dict[str, Any] | None:
        """The chat-completions ``response_format`` this asks for (None: plain text)."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "json_object"}
        schema: dict[str, Any] = {"name": self.name or "response", "schema": self.schema_ or {}}
        if self.strict is not None:
            schema["strict"] = self.strict
        if self.description:
            schema["description"] = self.description
        return {"type": "json_schema", "json_schema": schema}


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat = Field(default_factory=TextFormat)


class ResponsesTool(BaseModel):
    """The server tool (``openrouter:fusion``, with OpenRouter's optional ``parameters``), or one of the
    caller's functions in the Responses shape: ``{"type": "function", "name", "description", "parameters"}``.
    """

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = None
    description: str | None = Field(default=None, max_length=8_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _served_type(self) -> ResponsesTool:
        if self.type == "function":
            if self.name is None:
                raise ValueError("a function tool needs 'name'")
        elif self.type not in FUSION_TOOL_TYPES:
            raise ValueError(
                f"unsupported tool type {self.type!r} (use 'function' or the server tool 'openrouter:fusion')"
            )
        else:
            self.chat_tool()  # the server tool's parameters are checked now, where the caller wrote them
        return self

    def chat_tool(self) -> Tool:
        """The tool in the chat-completions shape (a function's fields go under ``function``)."""
        if self.type != "function":
            return Tool.model_validate(self.model_dump(exclude_none=True))
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        if self.strict is not None:
            function["strict"] = self.strict
        return Tool.model_validate(
            {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}
        )


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=MAX_MODEL_ID)
    input: list[InputItem] = Field(max_length=MAX_MESSAGES)
    instructions: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    max_output_tokens: int | None = Field(default=None, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False
    text: TextConfig | None = None
    tools: list[ResponsesTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    plugins: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_PLUGINS)
    fusion: FusionStreamOptions | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    user: str | None = Field(default=None, max_length=256)
    # Refused when set (see the module docstring).
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    background: bool | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input_items(cls, value: Any) -> Any:
        """A string is one user message; a replayed fusion item is a record of a run, not conversation."""
        if isinstance(value, str):
            if not value:
                raise ValueError("input is empty: send the text to answer")
            if len(value) > MAX_MESSAGE_CHARS:
                raise ValueError(f"input may have at most {MAX_MESSAGE_CHARS:,} characters")
            return [{"role": "user", "content": value}]
        if isinstance(value, list):
            return [
                item
                for item in value
                if not (isinstance(item, dict) and item.get("type") == FUSION_ITEM_TYPE)
            ]
        return value

    @model_validator(mode="after")
    def _served(self) -> ResponsesRequest:
        if self.previous_response_id is not None or self.conversation is not None:
            raise ValueError(
                "responses are not stored here, so there is nothing to continue: send the whole "
                "conversation in 'input' instead of previous_response_id or conversation"
            )
        if self.prompt is not None:
            raise ValueError("prompt templates are not supported: send the text in 'input'")
        if self.background:
            raise ValueError("background responses are not supported: use stream for long runs")
        if isinstance(self.tool_choice, dict):
            kind, name = self.tool_choice.get("type"), self.tool_choice.get("name")
            if kind not in FUSION_TOOL_TYPES and not (kind == "function" and isinstance(name, str)):
                raise ValueError(
                    "tool_choice must be 'none', 'auto', 'required', {'type': 'function', 'name': ...} or "
                    "{'type': 'openrouter:fusion'}"
                )
        return self

    def chat_tool_choice(self) -> str | dict[str, Any] | None:
        choice = self.tool_choice
        if isinstance(choice, dict) and choice.get("type") == "function":
            return {"type": "function", "function": {"name": choice["name"]}}
        return choice

    def messages(self) -> list[Message]:
        """``instructions`` and ``input`` as chat messages (instructions first, as a system message)."""
        messages = [Message(role="system", content=self.instructions)] if self.instructions else []
        for item in self.input:
            if item.type == "function_call_output":
                messages.append(Message(role="tool", tool_call_id=item.call_id, content=item.output))
            elif item.type == "function_call":
                call = ToolCall(
                    id=item.call_id or "",
                    function=FunctionCall(name=item.name or "", arguments=item.arguments or ""),
                )
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant":
                    # Calls made together (and the text before them) are one assistant turn.
                    last.tool_calls = [*(last.tool_calls or []), call]
                else:
                    messages.append(Message(role="assistant", tool_calls=[call]))
            else:
                messages.append(Message(role=item.role, content=item.content))
        return messages

    def chat_request(self) -> ChatCompletionRequest:
        """The chat-completions request this one means; ``ApiError`` 400 if it has nothing to answer."""
        try:
            return ChatCompletionRequest(
                model=self.model,
                messages=self.messages(),
                stream=self.stream,
                temperature=self.temperature,
                max_completion_tokens=self.max_output_tokens,
                response_format=self.text.format.response_format() if self.text else None,
                tools=[tool.chat_tool() for tool in self.tools or []] or None,
                tool_choice=self.chat_tool_choice(),
                plugins=self.plugins,
                fusion=self.fusion,
                user=self.user,
            )
        except ValidationError as error:
            if any(problem["loc"][:1] == ("messages",) for problem in error.errors()):
                raise ApiError(
                    400, "input: there is no message to answer.", code="invalid_request", param="input"
                ) from None
            raise validation_error(error) from None

    def tools_echo(self) -> list[dict[str, Any]]:
        return [tool.model_dump(exclude_none=True) for tool in self.tools or []]


# --- responses -------------------------------------------------------------------------------------------


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class MessageItem(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = Field(default_factory=list)


class FunctionCallItem(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed"]


class FusionItem(BaseModel):
    """OpenRouter's ``openrouter:fusion`` output item: the fusion call, its result fields once it is over
    (``analysis``, ``responses``, ``failed_models``, ``sources``, ``error``, ``failure_reason``, and where the
    run was saved), as the extra fields of this model."""

    model_config = ConfigDict(extra="allow")

    type: Literal["openrouter:fusion"] = "openrouter:fusion"
    id: str
    status: Literal["in_progress", "completed", "failed", "incomplete"]


OutputItem = MessageItem | FunctionCallItem | FusionItem


class ResponsesUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: dict[str, int] = Field(default_factory=dict)
    output_tokens: int = 0
    output_tokens_details: dict[str, int] = Field(default_factory=dict)
    total_tokens: int = 0
    # USD, summed over every model call of the request (as OpenRouter adds it); None when a price is unknown.
    cost: float | None = None


class ResponseErrorOut(BaseModel):
    code: str
    message: str
    failure_reason: str | None = None


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    usage: ResponsesUsage | None = None
    error: ResponseErrorOut | None = None
    incomplete_details: dict[str, str] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    parallel_tool_calls: bool = False
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    store: bool = False
    background: bool = False
    # Our extension, as on a chat completion: the fusion result of the run, absent when no fusion ran.
    fusion: dict[str, Any] | None = None
