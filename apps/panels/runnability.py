"""Whether a panel can run on this server now, and where each of its models would run.

``panel_runnability`` is the one rule: the chatroom's panel chooser (disabled with the reasons, warnings
shown), its send checks over HTTP and the socket, and the API's model list all follow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from django.conf import settings

from apps.panels.models import Panel
from apps.providers.base import ProviderError
from apps.providers.catalog import Catalog, ModelInfo, get_catalog
from apps.providers.registry import gateway_from_settings

# --- where a model runs -----------------------------------------------------------------------------------


def model_route(model: str) -> str:
    """``"demo"``, ``"endpoint"`` (a configured OpenAI-compatible server) or ``"openrouter"``.

    The same rule as ``apps.providers.registry``: ``demo/...`` is offline, ``<endpoint>/...`` goes to a
    server named in ``FUSIONROOM_ENDPOINTS``, anything else to OpenRouter.
    """
    if gateway_from_settings().is_demo(model):
        return "demo"
    prefix = model.split("/", 1)[0]
    if "/" in model and prefix in settings.FUSIONROOM_ENDPOINTS:
        return "endpoint"
    return "openrouter"


def catalog() -> Catalog:
    """The model catalog: live (cached) with a key, else the shipped snapshot; never blocks an event loop."""
    return get_catalog()


def model_info(model: str) -> ModelInfo | None:
    """The catalog's entry for ``model`` (live when a key is set, else the shipped snapshot), else None."""
    return catalog().get(model)


def model_is_known(model: str) -> bool:
    """Whether a builder may offer ``model``: in the catalog, a demo model, or on a configured endpoint."""
    route = model_route(model)
    if route == "endpoint":
        return bool(model.split("/", 1)[1])
    return model_info(model) is not None


class Runnability(NamedTuple):
    """Whether a panel can run on this server now. ``reasons`` say why not (and what to set); ``warnings``
    name models the live catalog no longer lists, which is worth fixing even when the panel still runs."""

    runnable: bool
    reasons: list[str]
    warnings: list[str]


def _panel_roles(panel: Panel | Mapping[str, Any]) -> tuple[list[str], str, str]:
    if isinstance(panel, Panel):
        return [member.model_id for member in panel.members.all()], panel.judge_model, panel.writer_model
    seats = [str(seat.get("model", "")) for seat in panel.get("seats", [])]
    return seats, str(panel.get("judge", "")), str(panel.get("writer", ""))


def panel_runnability(*, panel: Panel | Mapping[str, Any]) -> Runnability:
    """Check a panel (or a ``Panel.snapshot()``) against this server's configuration and OpenRouter's catalog.

    Without ``OPENROUTER_API_KEY`` a panel that needs OpenRouter is not runnable (the reason says what to
    set); demo models and models of configured endpoints run, unless the provider registry could never route
    them (an id of no known shape, a demo model that does not exist). With a key every OpenRouter slug is
    looked up in the live catalog: a missing one is a warning naming it; a missing writer, or every seat
    missing, also makes the panel not runnable, since such a run could only fail.
    """
    seats, judge, writer = _panel_roles(panel)
    reasons: list[str] = []
    warnings: list[str] = []
    if not seats:
        reasons.append("This panel has no seats: add at least one model.")
    roles = [(model, f"seat {index}") for index, model in enumerate(seats, start=1)]
    roles += [(judge, "judge"), (writer, "writer")]
    reasons += _unroutable(roles)
    needs_openrouter = [model for model, _ in roles if model_route(model) == "openrouter"]
    if needs_openrouter and not settings.OPENROUTER_API_KEY:
        names = ", ".join(dict.fromkeys(needs_openrouter))
        reasons.append(
            f"Needs OpenRouter for {names}: set OPENROUTER_API_KEY (or use the demo panel, "
            "or models of an endpoint configured in FUSIONROOM_ENDPOINTS)."
        )
        return Runnability(False, reasons, warnings)
    missing: dict[str, list[str]] = {}
    # Only a live catalog can say a slug is gone: the shipped snapshot is a small, dated subset.
    if needs_openrouter and catalog().is_live:
        for model, role in roles:
            if model_route(model) == "openrouter" and model_info(model) is None:
                missing.setdefault(model, []).append(role)
    for model, model_roles in missing.items():
        warnings.append(
            f"{model} ({', '.join(model_roles)}) is not in OpenRouter's model list: it was retired or "
            "renamed. Edit the panel to replace it."
        )
    if writer in missing:
        reasons.append(f"The writer {writer} is not available, so no fused answer could be written.")
    if seats and all(model in missing for model in seats):
        reasons.append("None of the panel's models is available.")
    return Runnability(not reasons, reasons, warnings)


def _unroutable(roles: list[tuple[str, str]]) -> list[str]:
    """What the provider registry says about models it could never route (an id of no known shape, a demo
    model that does not exist), one reason per model. An OpenRouter slug without a key is not one of them:
    the caller says what to set for those."""
    gateway = gateway_from_settings()
    problems: dict[str, tuple[str, list[str]]] = {}
    for model, role in roles:
        if model_route(model) == "openrouter" and not settings.OPENROUTER_API_KEY:
            continue
        if model in problems:
            problems[model][1].append(role)
            continue
        try:
            gateway.route(model)
        except ProviderError as exc:
            problems[model] = (exc.message, [role])
    return [f"{', '.join(model_roles).capitalize()}: {message}" for message, model_roles in problems.values()]
