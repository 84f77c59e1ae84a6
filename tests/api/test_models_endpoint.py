"""``GET /api/v1/models``: the fusion entries (default, presets, the caller's panels) and the plain models."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from openai import AsyncOpenAI

from apps.panels.presets import PRESETS
from tests.api.conftest import Caller
from tests.api.test_fusion_model import _panel
from tests.fakes.upstream import FakeUpstream

QUALITY = PRESETS["quality"]
QUALITY_MODELS = [*QUALITY["seats"], QUALITY["judge"], QUALITY["writer"]]


async def test_the_list_has_fusion_presets_own_panels_and_demo_models(
    oai: AsyncOpenAI, alice: Caller, bob: Caller
) -> None:
    await sync_to_async(_panel)(alice, "alices-pair", ["demo/atlas", "demo/birch"])
    await sync_to_async(_panel)(bob, "bobs-trio", ["demo/atlas"])
    page = await oai.models.list()
    entries = {model.id: model for model in page.data}
    ids = list(entries)
    assert ids[0] == "fusion"
    assert {"fusion/demo", "fusion/quality", "fusion/alices-pair"} <= set(ids)
    assert "fusion/bobs-trio" not in ids
    assert {"demo/atlas", "demo/birch", "demo/cedar", "demo/judge", "demo/writer"} <= set(ids)
    assert all(model.object == "model" for model in page.data)

    default = entries["fusion"].model_extra or {}
    assert default["demo"] is True and default["fusion"]["panel"] == "demo"
    assert entries["demo/atlas"].model_extra["demo"] is True  # type: ignore[index]
    quality = entries["fusion/quality"].model_extra or {}
    assert quality["demo"] is False and quality["fusion"]["openrouter_preset"] == "general-high"
    # Without a provider key the Quality preset is listed, with the reason it cannot run here.
    assert "OPENROUTER_API_KEY" in quality["unavailable_reason"]
    mine = entries["fusion/alices-pair"].model_extra or {}
    assert mine["fusion"]["seats"] == ["demo/atlas", "demo/birch"] and mine["fusion"]["preset"] is False


def _listed(*model_ids: str) -> list[dict[str, Any]]:
    """Entries of OpenRouter's ``GET /models`` for these slugs."""
    return [
        {"id": model, "name": model, "context_length": 8192, "pricing": {"prompt": "0", "completion": "0"}}
        for model in model_ids
    ]


async def test_with_a_key_the_default_is_quality_and_openrouter_models_are_listed(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.models = [*upstream.models, *_listed(*QUALITY_MODELS)]
    entries = {model.id: model.model_extra or {} for model in (await oai.models.list()).data}
    assert entries["fusion"]["fusion"]["panel"] == "quality"
    assert entries["fusion/quality"]["unavailable_reason"] is None
    # The loopback upstream's catalog, fetched live.
    assert any(model_id.startswith("fake/") for model_id in entries)


async def test_a_panel_whose_writer_openrouter_no_longer_lists_is_listed_as_unavailable(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    # The chooser's rule (panel_runnability): without its writer no fused answer could be written.
    upstream.models = _listed(*(model for model in QUALITY_MODELS if model != QUALITY["writer"]))
    entries = {model.id: model.model_extra or {} for model in (await oai.models.list()).data}
    reason = entries["fusion/quality"]["unavailable_reason"]
    assert reason and f"The writer {QUALITY['writer']} is not available" in reason
