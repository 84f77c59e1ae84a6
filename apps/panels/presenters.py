"""Plain objects the builder's templates render: a panel with its status, seat rows, catalog search rows.

Templates get values, never decisions: what is unknown is decided here and rendered as the word "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from apps.fusion.schemas import DEFAULT_DEADLINE_S, FusionOptions
from apps.panels.costs import panel_estimate_cost, unpriced_models, usage_history_for
from apps.panels.forms import BuilderInput
from apps.panels.models import Panel
from apps.panels.runnability import (
    Runnability,
    catalog,
    model_info,
    model_is_known,
    model_route,
    panel_runnability,
)
from apps.providers.catalog import ModelInfo
from apps.providers.registry import gateway_from_settings
from apps.webtools.toolbox import seat_web_label

PER_MILLION = 1_000_000


def price_per_million(price: float | None) -> str:
    """``$0.50`` for a per-token price of 5e-7; ``unknown`` when the catalog has none."""
    if price is None:
        return "unknown"
    per_million = price * PER_MILLION
    if per_million == 0:
        return "free"
    return f"${per_million:,.2f}" if per_million >= 0.01 else f"${per_million:.4f}"


def context_text(tokens: int | None) -> str:
    return "unknown" if not tokens else f"{tokens:,} tokens"


def model_label(model: str) -> str:
    """The catalog's display name of ``model``, or the id itself when the catalog does not know it."""
    info = model_info(model)
    return info.name if info is not None else model


@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    vendor: str
    prompt_price: str
    completion_price: str
    context: str
    is_demo: bool
    provider: str


def model_row(info: ModelInfo) -> ModelRow:
    return ModelRow(
        id=info.id,
        name=info.name,
        vendor=info.vendor,
        prompt_price=price_per_million(info.prompt_price),
        completion_price=price_per_million(info.completion_price),
        context=context_text(info.context_length),
        is_demo=info.is_demo,
        provider=info.provider,
    )


def endpoint_row(model: str) -> ModelRow:
    """A model of a configured endpoint, typed in full: the catalog cannot list what such a server offers."""
    endpoint = model.split("/", 1)[0]
    return ModelRow(
        id=model,
        name=model,
        vendor=endpoint,
        prompt_price="unknown",
        completion_price="unknown",
        context="unknown",
        is_demo=False,
        provider=endpoint,
    )


def search_rows(query: str, *, limit: int) -> list[ModelRow]:
    """Catalog models matching ``query`` by name, id or vendor (an empty query lists the first ones).

    A query that is a whole model id of a configured endpoint (``ollama/llama3.2``) comes first, so such a
    model can be put on a seat like any other."""
    rows = [model_row(info) for info in catalog().search(query, limit)]
    model = query.strip()
    typed = " " not in model and model_route(model) == "endpoint" and model_is_known(model)
    if typed and all(row.id != model for row in rows):
        rows = [endpoint_row(model), *rows][:limit]
    return rows


@dataclass(frozen=True)
class SeatRow:
    number: int
    model: str
    name: str
    temperature: str
    system_prompt: str
    is_first: bool
    is_last: bool
    model_error: str
    temperature_error: str
    system_prompt_error: str
    focus: str  # which of this row's buttons gets focus after a swap: "up", "down", "remove" or ""
    # Which web tools the seat will be offered, in words ("Web: OpenRouter search", "No web tools (demo)").
    web: str = ""


def seat_rows(data: BuilderInput, errors: Mapping[str, str], *, focus: str = "") -> list[SeatRow]:
    count = len(data.seats)
    rows = []
    for number, seat in enumerate(data.seats, start=1):
        prefix = f"seat-{number}-"
        rows.append(
            SeatRow(
                number=number,
                model=seat.model,
                name=model_label(seat.model),
                temperature=seat.temperature,
                system_prompt=seat.system_prompt,
                is_first=number == 1,
                is_last=number == count,
                model_error=errors.get(f"{prefix}model", ""),
                temperature_error=errors.get(f"{prefix}temperature", ""),
                system_prompt_error=errors.get(f"{prefix}system_prompt", ""),
                focus=focus.removeprefix(prefix) if focus.startswith(prefix) else "",
                web=seat_web_label(seat.model, web_tools=data.web_tools),
            )
        )
    return rows


@dataclass(frozen=True)
class OptionField:
    name: str
    label: str
    value: str
    placeholder: str
    help: str
    step: str
    min: str
    max: str
    error: str = ""


def option_fields(data: BuilderInput, errors: Mapping[str, str] | None = None) -> list[OptionField]:
    errors = errors or {}
    return [replace(field, error=errors.get(field.name, "")) for field in _option_fields(data)]


def _option_fields(data: BuilderInput) -> list[OptionField]:
    defaults = FusionOptions()
    return [
        OptionField(
            "temperature",
            "Panel temperature",
            data.option("temperature"),
            "model default",
            "0 to 2; a seat's own temperature wins.",
            "0.1",
            "0",
            "2",
        ),
        OptionField(
            "deadline_s",
            "Deadline (seconds)",
            data.option("deadline_s"),
            f"{DEFAULT_DEADLINE_S:g}",
            f"Default {DEFAULT_DEADLINE_S:g}. The judge starts with the answers done by then; a seat still "
            "writing is left out (its text is kept). Raise it for slow models.",
            "any",
            "1",
            "3600",
        ),
        OptionField(
            "quorum",
            "Quorum (seats)",
            data.option("quorum"),
            "every seat",
            "The judge starts once this many seats are done.",
            "1",
            "1",
            "8",
        ),
        OptionField(
            "max_tool_calls",
            "Max tool calls per seat",
            data.option("max_tool_calls"),
            str(defaults.max_tool_calls),
            "1 to 16 web searches and fetches per seat.",
            "1",
            "1",
            "16",
        ),
        OptionField(
            "max_completion_tokens",
            "Max completion tokens",
            data.option("max_completion_tokens"),
            str(defaults.max_completion_tokens),
            "Per call; bounds the cost.",
            "1",
            "1",
            "200000",
        ),
    ]


@dataclass(frozen=True)
class SeatView:
    number: int
    model: str
    name: str
    route: str
    temperature: float | None
    system_prompt: str


@dataclass(frozen=True)
class PanelCard:
    panel: Panel
    seats: list[SeatView]
    judge: str
    judge_name: str
    writer: str
    writer_name: str
    options: list[tuple[str, str]]
    status: Runnability
    # Said instead of ``options`` when the panel sets none.
    defaults: str = ""


def panel_card(panel: Panel) -> PanelCard:
    labels = {field.name: field.label for field in option_fields(BuilderInput())}
    options = [(labels[key], str(value)) for key, value in panel.options.items() if key in labels]
    options += [("Web tools", "off")] if panel.options.get("web_tools") is False else []
    if options and "deadline_s" not in panel.options:
        # The one default that cuts answers short: always said.
        options.append((labels["deadline_s"], f"{DEFAULT_DEADLINE_S:g} (default)"))
    defaults = FusionOptions()
    return PanelCard(
        panel=panel,
        seats=[
            SeatView(
                number=number,
                model=member.model_id,
                name=model_label(member.model_id),
                route=model_route(member.model_id),
                temperature=member.temperature,
                system_prompt=member.system_prompt,
            )
            for number, member in enumerate(panel.members.all(), start=1)
        ],
        judge=panel.judge_model,
        judge_name=model_label(panel.judge_model),
        writer=panel.writer_model,
        writer_name=model_label(panel.writer_model),
        options=options,
        status=panel_runnability(panel=panel),
        defaults=(
            f"Defaults (a {DEFAULT_DEADLINE_S:g} s deadline, every seat awaited, {defaults.max_tool_calls} "
            f"tool calls per seat, {defaults.max_completion_tokens:,} completion tokens per call)."
        ),
    )


def snapshot_models(snapshot: Mapping[str, Any]) -> list[str]:
    seats = [str(seat.get("model", "")) for seat in snapshot.get("seats", [])]
    return [*seats, str(snapshot.get("judge", "")), str(snapshot.get("writer", ""))]


def estimate_context(
    *, panel: Panel | None, prompt_chars: int, history_chars: int, user: Any = None
) -> dict[str, Any]:
    """What ``panels/_estimate.html`` renders for ``panel`` (None: no panel chosen, or not one of yours);
    the typical figure from ``user``'s recent runs where they used these models."""
    if panel is None:
        return {"panel": None}
    snapshot = panel.snapshot()
    all_demo = all(map(gateway_from_settings().is_demo, snapshot_models(snapshot)))
    estimate = panel_estimate_cost(
        snapshot_or_panel=snapshot,
        prompt_chars=prompt_chars,
        history_chars=history_chars,
        # Demo runs cost nothing whatever they wrote: no need to read the history.
        usage=None if all_demo else usage_history_for(user=user),
    )
    return {
        "panel": panel,
        "estimate": estimate,
        "unpriced": [] if estimate is not None else unpriced_models(snapshot_or_panel=snapshot),
        "all_demo": all_demo,
        "runnability": panel_runnability(panel=snapshot),
        "seat_count": len(snapshot["seats"]),
    }
