"""The read-only preset panels, as plain data.

Data migrations create and update the preset ``Panel`` rows from this module (``sync_preset_rows``), and code
that runs without the database (``manage.py fuse``'s fallback, the benchmarks) reads it directly. A change to
``PRESETS`` ships with a new migration that calls ``sync_preset_rows`` again, so every deployment converges.

Every OpenRouter slug below was checked against OpenRouter's own model pages (the address is next to each
slug) and against the catalog snapshot shipped in ``apps/providers/data/openrouter_models.json``. The
``~vendor/...-latest`` slugs are OpenRouter aliases that follow each vendor's newest model, so they do not
retire; dated slugs can, which is why saved panels and presets are re-checked against the live catalog
whenever a key is set (``apps.panels.runnability.panel_runnability``).
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
    # OpenRouter's name for the same preset, where it has one (the plugin's "preset" field).
    openrouter_preset: str | None


DEMO_PANEL_MODELS = ["demo/atlas", "demo/birch", "demo/cedar"]
DEMO_JUDGE = "demo/judge"
DEMO_WRITER = "demo/writer"

# Confirmed at https://openrouter.ai/~anthropic/claude-opus-latest ("always redirects to the latest model in
# the Claude Opus family"); ~openai/gpt-latest and ~google/gemini-pro-latest are the other two seats of
# OpenRouter's documented default "quality" panel (openrouter-facts.md, "Default quality panel").
OPUS_LATEST = "~anthropic/claude-opus-latest"
GPT_LATEST = "~openai/gpt-latest"
GEMINI_PRO_LATEST = "~google/gemini-pro-latest"
# https://openrouter.ai/google/gemini-3-flash-preview/api (Gemini 3 Flash Preview, 1,048,576 context).
GEMINI_3_FLASH = "google/gemini-3-flash-preview"
# https://openrouter.ai/moonshotai/kimi-k2.6-20260420/api names the slug moonshotai/kimi-k2.6 (MoonshotAI:
# Kimi K2.6, released Apr 20, 2026, 262,144 context).
KIMI_K2_6 = "moonshotai/kimi-k2.6"
# https://openrouter.ai/deepseek/deepseek-v4-pro/api (DeepSeek V4 Pro, released Apr 24, 2026, 1M context).
DEEPSEEK_V4_PRO = "deepseek/deepseek-v4-pro"
# https://openrouter.ai/openai/gpt-5.4-mini (GPT-5.4 Mini, released Mar 17, 2026, 400,000 context).
GPT_5_4_MINI = "openai/gpt-5.4-mini"
# https://openrouter.ai/openrouter/auto lists anthropic/claude-haiku-4.5 among the models it routes to.
CLAUDE_HAIKU_4_5 = "anthropic/claude-haiku-4.5"

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
        "seats": [OPUS_LATEST, GPT_LATEST, GEMINI_PRO_LATEST],
        "judge": OPUS_LATEST,
        "writer": OPUS_LATEST,
        "options": {},
        "openrouter_preset": "general-high",
    },
    "budget": {
        "name": "Budget",
        "description": "Gemini 3 Flash, Kimi K2.6 and DeepSeek V4 Pro; Claude Opus judges and writes.",
        "seats": [GEMINI_3_FLASH, KIMI_K2_6, DEEPSEEK_V4_PRO],
        "judge": OPUS_LATEST,
        "writer": OPUS_LATEST,
        "options": {},
        "openrouter_preset": "general-budget",
    },
    "fast": {
        "name": "Fast",
        # Three small models of similar speed, so the judge never waits long for a straggler; Gemini 3 Flash
        # (fast, structured output) judges and writes.
        "description": "Three fast small models of similar latency; Gemini 3 Flash judges and writes.",
        "seats": [GEMINI_3_FLASH, GPT_5_4_MINI, CLAUDE_HAIKU_4_5],
        "judge": GEMINI_3_FLASH,
        "writer": GEMINI_3_FLASH,
        "options": {"max_completion_tokens": 4000, "max_tool_calls": 2, "deadline_s": 90},
        "openrouter_preset": "general-fast",
    },
    "self-fusion": {
        "name": "Self-fusion",
        # The seed article: Opus fused with itself (two seats, Opus as judge) beat Opus alone by 6.7 points.
        "description": "Claude Opus on two seats, judged and fused by Claude Opus.",
        "seats": [OPUS_LATEST, OPUS_LATEST],
        "judge": OPUS_LATEST,
        "writer": OPUS_LATEST,
        "options": {},
        "openrouter_preset": None,
    },
}


def preset_slug_for_openrouter_name(name: str) -> str | None:
    """Our preset slug for an OpenRouter preset name (``general-high`` -> ``quality``), else None."""
    for slug, spec in PRESETS.items():
        if spec["openrouter_preset"] == name:
            return slug
    return None


def sync_preset_rows(panel_model: Any, member_model: Any) -> None:
    """Create or update the preset rows (owner None) to match ``PRESETS``; remove presets no longer listed.

    Takes the model classes so data migrations can pass their historical models; fields a historical model
    does not have yet are left out, so an early migration and a later one can both call this.
    """
    fields = {field.name for field in panel_model._meta.get_fields()}
    for position, (slug, spec) in enumerate(PRESETS.items()):
        defaults: dict[str, Any] = {
            "name": spec["name"],
            "description": spec["description"],
            "judge_model": spec["judge"],
            "writer_model": spec["writer"],
            "options": dict(spec["options"]),
        }
        if "preset_order" in fields:
            defaults["preset_order"] = position
            defaults["openrouter_preset"] = spec["openrouter_preset"] or ""
        else:
            # Before 0003 the order lived in the options.
            defaults["options"]["order"] = position
        panel, _ = panel_model.objects.update_or_create(owner=None, slug=slug, defaults=defaults)
        member_model.objects.filter(panel=panel).delete()
        member_model.objects.bulk_create(
            member_model(panel=panel, position=index, model_id=model)
            for index, model in enumerate(spec["seats"], start=1)
        )
    panel_model.objects.filter(owner=None).exclude(slug__in=list(PRESETS)).delete()
