"""The read-only preset panels, as plain data.

Data migrations create and update the preset ``Panel`` rows from this module, and code that runs without the
database (``manage.py fuse``'s fallback, the benchmarks) reads it directly. Slugs must exist in OpenRouter's
catalog; ``demo`` runs offline.
"""

from __future__ import annotations

from typing import Any, TypedDict


class PresetSpec(TypedDict):
    name: str
    description: str
    seats: list[str]
    judge: str
    writer: str
    options: dict[str, Any]
    # OpenRouter's name for the same preset, where it has one (plugin "preset" field).
    openrouter_preset: str | None


DEMO_PANEL_MODELS = ["demo/atlas", "demo/birch", "demo/cedar"]
DEMO_JUDGE = "demo/judge"
DEMO_WRITER = "demo/writer"

PRESETS: dict[str, PresetSpec] = {
    "demo": {
        "name": "Demo (offline)",
        "description": "Built-in demo models that run with no key and no network. Answers are canned, not real.",
        "seats": DEMO_PANEL_MODELS,
        "judge": DEMO_JUDGE,
        "writer": DEMO_WRITER,
        "options": {},
        "openrouter_preset": None,
    },
    "quality": {
        "name": "Quality",
        "description": "The newest frontier model of three vendors; Claude Opus judges and writes.",
        "seats": ["~anthropic/claude-opus-latest", "~openai/gpt-latest", "~google/gemini-pro-latest"],
        "judge": "~anthropic/claude-opus-latest",
        "writer": "~anthropic/claude-opus-latest",
        "options": {},
        "openrouter_preset": "general-high",
    },
}
