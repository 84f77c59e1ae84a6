"""The preset panels the migrations create: what they hold, that their slugs exist, that re-syncing heals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from apps.chat.services import options_from_snapshot
from apps.fusion.schemas import FusionOptions
from apps.panels.models import Panel, PanelMember
from apps.panels.presets import PRESETS, preset_slug_for_openrouter_name, sync_preset_rows
from apps.panels.selectors import panel_list_for
from apps.providers.catalog import demo_models, snapshot_load

pytestmark = pytest.mark.django_db


def _seats(slug: str) -> list[str]:
    return list(Panel.objects.get(owner=None, slug=slug).members.values_list("model_id", flat=True))


def test_the_migrations_create_five_presets_in_order_for_everyone() -> None:
    presets = list(panel_list_for(user=AnonymousUser()))
    assert [panel.slug for panel in presets] == ["demo", "quality", "budget", "fast", "self-fusion"]
    assert [panel.name for panel in presets] == ["Demo (offline)", "Quality", "Budget", "Fast", "Self-fusion"]
    assert all(panel.is_preset for panel in presets)


def test_quality_is_openrouters_default_panel_with_opus_judging_and_writing() -> None:
    assert _seats("quality") == [
        "~anthropic/claude-opus-latest",
        "~openai/gpt-latest",
        "~google/gemini-pro-latest",
    ]
    quality = Panel.objects.get(owner=None, slug="quality")
    assert (quality.judge_model, quality.writer_model) == ("~anthropic/claude-opus-latest",) * 2


def test_budget_is_the_seed_articles_budget_panel() -> None:
    assert _seats("budget") == [
        "google/gemini-3-flash-preview",
        "moonshotai/kimi-k2.6",
        "deepseek/deepseek-v4-pro",
    ]
    budget = Panel.objects.get(owner=None, slug="budget")
    assert budget.judge_model == budget.writer_model == "~anthropic/claude-opus-latest"


def test_fast_has_three_distinct_small_models_and_tight_limits() -> None:
    seats = _seats("fast")
    assert len(seats) == len(set(seats)) == 3
    fast = Panel.objects.get(owner=None, slug="fast")
    assert fast.judge_model in seats and fast.writer_model == fast.judge_model
    assert (
        FusionOptions.model_validate(fast.options).max_completion_tokens
        < FusionOptions().max_completion_tokens
    )


def test_self_fusion_seats_one_model_twice_and_lets_it_judge_and_write() -> None:
    seats = _seats("self-fusion")
    self_fusion = Panel.objects.get(owner=None, slug="self-fusion")
    assert len(seats) == 2 and len(set(seats)) == 1
    assert self_fusion.judge_model == self_fusion.writer_model == seats[0]


def test_demo_runs_offline_models_only() -> None:
    demo = Panel.objects.get(owner=None, slug="demo")
    models = [*_seats("demo"), demo.judge_model, demo.writer_model]
    assert models == ["demo/atlas", "demo/birch", "demo/cedar", "demo/judge", "demo/writer"]


def test_openrouter_preset_names_map_to_our_presets_and_their_rows_carry_them() -> None:
    assert preset_slug_for_openrouter_name("general-high") == "quality"
    assert preset_slug_for_openrouter_name("general-budget") == "budget"
    assert preset_slug_for_openrouter_name("general-fast") == "fast"
    assert preset_slug_for_openrouter_name("general-nonsense") is None
    assert preset_slug_for_openrouter_name("quality") is None
    named = Panel.objects.filter(owner=None).exclude(openrouter_preset="")
    assert {panel.openrouter_preset: panel.slug for panel in named} == {
        "general-high": "quality",
        "general-budget": "budget",
        "general-fast": "fast",
    }


def test_every_preset_model_is_in_the_shipped_catalog_or_a_demo_model() -> None:
    known = {info.id for info in snapshot_load().models} | {info.id for info in demo_models()}
    for slug, spec in PRESETS.items():
        for model in [*spec["seats"], spec["judge"], spec["writer"]]:
            assert model in known, f"{slug}: {model}"


def test_preset_options_are_valid_engine_options() -> None:
    for panel in Panel.objects.filter(owner=None):
        FusionOptions.model_validate(panel.options)  # extra keys (the old "order") would be refused


def test_every_preset_runs_with_a_deadline_so_one_silent_seat_cannot_hold_it() -> None:
    for panel in Panel.objects.filter(owner=None):
        assert options_from_snapshot(panel.snapshot()).deadline_s == 90, panel.slug


def test_syncing_again_restores_edited_presets_and_removes_retired_ones() -> None:
    quality = Panel.objects.get(owner=None, slug="quality")
    quality.name = "Tampered"
    quality.save()
    quality.members.all().delete()
    Panel.objects.create(owner=None, slug="retired", name="Retired", judge_model="x/y", writer_model="x/y")
    sync_preset_rows(Panel, PanelMember)
    sync_preset_rows(Panel, PanelMember)  # idempotent
    quality.refresh_from_db()
    assert quality.name == "Quality" and len(_seats("quality")) == 3
    assert not Panel.objects.filter(owner=None, slug="retired").exists()
    assert Panel.objects.filter(owner=None).count() == len(PRESETS)
