"""What a browser may send down the chatroom socket, as pydantic models, and how a bad frame is explained.

Frames are JSON text with a ``type``: ``send`` (a prompt for a panel), ``cancel`` (a running turn),
``resync`` (ask for a fresh snapshot of a turn, after a gap in its deltas), and the actions on a finished
turn: ``regenerate``, ``edit`` (with a new prompt), ``retry`` (its failed seats) and ``version`` (which
version of a turn is shown). Anything else gets an ``error``
frame whose message says what was wrong; the socket stays open.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# Enough for the longest allowed prompt even if every character is JSON-escaped; checked before parsing.
# room.js sends no frame whose UTF-8 size is over it, so no browser frame reaches Daphne's own limit (1 MiB a
# message), past which Daphne closes the socket (code 1009) and this module never gets to explain.
MAX_FRAME_CHARS = 256 * 1024


class FrameError(ValueError):
    """A frame we cannot act on, with a message for the page."""


class SendFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["send"]
    # The prompt's own limits are checked by the service, which words them for the person.
    prompt: str
    panel: int = Field(ge=1)


class CancelFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["cancel"]
    turn: int = Field(ge=1)


class ResyncFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["resync"]
    turn: int = Field(ge=1)


class RegenerateFrame(BaseModel):
    """Run the last turn again (same prompt and panel) as a new version of it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["regenerate"]
    turn: int = Field(ge=1)


class EditFrame(BaseModel):
    """Send the last turn again with this prompt, as a new version of it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["edit"]
    turn: int = Field(ge=1)
    # The prompt's own limits are checked by the service, which words them for the person.
    prompt: str


class RetryFrame(BaseModel):
    """Run a finished turn's failed seats again, then its judge and writer."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["retry"]
    turn: int = Field(ge=1)


class VersionFrame(BaseModel):
    """Show version ``version`` of the position of ``turn`` (the version now shown)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["version"]
    turn: int = Field(ge=1)
    version: int = Field(ge=1)


Frame = SendFrame | CancelFrame | ResyncFrame | RegenerateFrame | EditFrame | RetryFrame | VersionFrame
InboundFrame = Annotated[Frame, Field(discriminator="type")]
# The discriminated Annotated union is not a type to mypy; pydantic reads it at run time.
_ADAPTER: TypeAdapter[Frame] = TypeAdapter(cast(Any, InboundFrame))


def frame_parse(text: str | None) -> Frame:
    """Validate one inbound frame; ``FrameError`` says what is wrong with it."""
    if text is None:
        raise FrameError("Send JSON text frames; binary frames are not understood.")
    if len(text) > MAX_FRAME_CHARS:
        size, limit = len(text) // 1024, MAX_FRAME_CHARS // 1024
        raise FrameError(f"That message is too large ({size:,} KiB); the limit is {limit} KiB.")
    _duplicate_keys_refuse(text)
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise FrameError(_explain(exc)) from None


def _duplicate_keys_refuse(text: str) -> None:
    """A key given twice is refused, as the API refuses it (``apps/api/body.py``), rather than letting its
    last value win silently: the page never sends one, and parsers differ on which value counts. Text that
    is not JSON is left to the validation that follows, which words that error."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) < len(items):  # linear: a frame may hold tens of thousands of keys
            seen: set[str] = set()
            for key, _value in items:
                if key in seen:
                    raise FrameError(f"The message gives {key!r} more than once.")
                seen.add(key)
        return found

    try:
        json.loads(text, object_pairs_hook=pairs)
    except FrameError:
        raise
    except (ValueError, RecursionError):
        pass


def _explain(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    where = ".".join(str(part) for part in error["loc"])
    if kind == "json_invalid":
        return "That message is not valid JSON."
    if not error["loc"] or kind in ("union_tag_invalid", "union_tag_not_found"):
        return (
            "Unknown message: expected a JSON object with type send, cancel, resync, regenerate, edit, "
            "retry or version."
        )
    if kind == "missing":
        return f"The message lacks {where.split('.', 1)[-1]!r}."
    if kind == "extra_forbidden":
        return f"The message has an unexpected field {where.split('.', 1)[-1]!r}."
    return f"Bad value for {where.split('.', 1)[-1]!r}: {error['msg']}."
