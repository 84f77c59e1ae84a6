"""What the API reads: which panel a ``fusion/<slug>`` or a plugin ``preset`` names, and the model list."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.api.schemas import ModelList, ModelObject
from apps.chat.services import panel_unavailable_reason
from apps.panels.models import Panel
from apps.panels.presets import preset_slug_for_openrouter_name
from apps.panels.selectors import panel_list_for
from apps.providers.base import ModelGateway
from apps.providers.catalog import ModelInfo

FUSION_MODEL = "fusion"
# Accepted for OpenRouter compatibility: the same default panel.
FUSION_ALIASES = frozenset({"fusion", "openrouter/fusion"})
OWNER = "fusionroom"


def fusion_slug(model: str) -> str | None:
    """``""`` for the default fusion model, the slug of ``fusion/<slug>``, None for any other model id."""
    if model in FUSION_ALIASES:
        return ""
    for prefix in ("fusion/", "openrouter/fusion/"):
        if model.startswith(prefix) and len(model) > len(prefix):
            return model[len(prefix) :]
    return None


def default_panel_slug() -> str:
    return "quality" if settings.OPENROUTER_API_KEY else "demo"


def panel_find(*, user: AbstractBaseUser | AnonymousUser, name: str) -> Panel | None:
    """The panel ``name`` means to ``user``: a preset by slug or by OpenRouter preset name, else one of the
    user's own panels by slug. Presets come first, so a saved panel cannot shadow a preset's name.
    """
    panels = list(panel_list_for(user=user))
    preset = preset_slug_for_openrouter_name(name) or name
    for panel in panels:
        if panel.is_preset and panel.slug == preset:
            return panel
    for panel in panels:
        if not panel.is_preset and panel.slug == name:
            return panel
    return None


def panel_default(*, user: AbstractBaseUser | AnonymousUser) -> Panel:
    panel = panel_find(user=user, name=default_panel_slug())
    if panel is None:  # only if the preset migration never ran
        raise Panel.DoesNotExist("The preset panels are missing: run `manage.py migrate`.")
    return panel


def _fusion_entry(*, model_id: str, panel: Panel, gateway: ModelGateway) -> ModelObject:
    snapshot = panel.snapshot()
    models = [seat["model"] for seat in snapshot["seats"]] + [panel.judge_model, panel.writer_model]
    fusion: dict[str, Any] = {
        "panel": panel.slug,
        "panel_name": panel.name,
        "preset": panel.is_preset,
        "seats": [seat["model"] for seat in snapshot["seats"]],
        "judge": panel.judge_model,
        "writer": panel.writer_model,
    }
    if panel.is_preset and panel.openrouter_preset:
        fusion["openrouter_preset"] = panel.openrouter_preset
    return ModelObject(
        id=model_id,
        owned_by=OWNER,
        name=f"Fusion: {panel.name}",
        demo=all(gateway.is_demo(model) for model in models),
        fusion=fusion,
        unavailable_reason=panel_unavailable_reason(panel=panel),
    )


def model_list_for(
    *, user: AbstractBaseUser | AnonymousUser, gateway: ModelGateway, models: list[ModelInfo]
) -> ModelList:
    """``fusion`` (the default panel), ``fusion/<slug>`` for every preset and the user's panels, then the
    plain ``models`` this installation can run (``Gateway.available_models()``), demo models marked.
    """
    panels = list(panel_list_for(user=user))
    default = default_panel_slug()
    data: list[ModelObject] = []
    for panel in panels:
        if panel.is_preset and panel.slug == default:
            data.append(_fusion_entry(model_id=FUSION_MODEL, panel=panel, gateway=gateway))
    seen = set()
    for panel in panels:
        if panel.slug in seen:  # a saved panel with a preset's slug is reachable by the preset only
            continue
        seen.add(panel.slug)
        data.append(_fusion_entry(model_id=f"fusion/{panel.slug}", panel=panel, gateway=gateway))
    for info in models:
        data.append(
            ModelObject(
                id=info.id,
                owned_by=info.provider if info.provider != "openrouter" else info.vendor,
                name=info.name,
                demo=info.is_demo,
                context_length=info.context_length,
            )
        )
    return ModelList(data=data)
