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
        "description": "Offline demo models: no key, no network, illustrative answers.",
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


def sync_preset_rows(panel_model: Any, member_model: Any) -> None:
    """Create or update the preset rows (owner None) to match ``PRESETS``; remove presets no longer listed.

    Takes the model classes so data migrations can pass their historical models.
    """
    for position, (slug, spec) in enumerate(PRESETS.items()):
        panel, _ = panel_model.objects.update_or_create(
            owner=None,
            slug=slug,
            defaults={
                "name": spec["name"],
                "description": spec["description"],
                "judge_model": spec["judge"],
                "writer_model": spec["writer"],
                "options": {**spec["options"], "order": position},
            },
        )
        member_model.objects.filter(panel=panel).delete()
        member_model.objects.bulk_create(
            member_model(panel=panel, position=index, model_id=model)
            for index, model in enumerate(spec["seats"], start=1)
        )
    panel_model.objects.filter(owner=None).exclude(slug__in=list(PRESETS)).delete()
