"""What the engine needs from web tools: their definitions for the model, and a way to run one call.

The engine stays free of HTTP and Django: ``apps/webtools`` implements ``Toolbox`` (search and fetch, with
the SSRF rules), tests pass fakes. A tool never raises into the engine: a refused address, a failed search
or malformed arguments come back as an outcome with ``ok=False`` whose content tells the model what went
wrong, so it can try something else or answer without.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.fusion.schemas import Source


@dataclass(frozen=True)
class ToolOutcome:
    ok: bool
    # What the model reads: the result inside a delimited data block, or the reason it failed.
    content: str
    # What a person reads in the seat's column: "3 results", "read example.com/page (12 kB)".
    detail: str
    sources: list[Source] = field(default_factory=list)


class Toolbox(Protocol):
    def definitions(self, model: str, *, max_calls: int) -> list[dict[str, Any]]:
        """The tools offered to ``model`` (an empty list: none), as its request's ``tools``.

        OpenAI-shaped function tools (``{"type": "function", "function": {...}}``), which ``run`` runs;
        or, for a model routed to OpenRouter, OpenRouter's server tools (``{"type":
        "openrouter:web_search"}``), which OpenRouter runs during the call and which come back as
        citations, never as calls to ``run``.
        ``max_calls`` is the seat's remaining budget of tool calls.
        """
        ...

    def describe(self, name: str, arguments: str) -> str:
        """What a call is about, in words, before it runs ("example.com/page", "rust async runtimes")."""
        ...

    async def run(self, name: str, arguments: str) -> ToolOutcome:
        """Run one call; never raises for a failure of the tool itself (only when cancelled)."""
        ...
