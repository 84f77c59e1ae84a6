"""What the panels app does: save, duplicate and delete custom panels, say whether a panel can run here, and
estimate what a run costs.

Contract used by the chatroom and the API (keep these signatures):

- ``panel_save(*, owner, data, panel_id=None) -> Panel`` (raises ``PanelInvalid`` with per-field messages)
- ``panel_duplicate(*, user, panel) -> Panel`` and ``panel_delete(*, user, panel_id) -> None``
- ``panel_runnability(*, panel) -> Runnability(runnable, reasons, warnings)``
- ``panel_estimate_cost(*, snapshot_or_panel, prompt_chars, history_chars) -> CostRange | None``
- ``turn_cost_comparison(*, turn) -> CostComparison(actual, writer_alone)``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.text import slugify
from pydantic import ValidationError

from apps.fusion.schemas import MAX_SEATS, FusionOptions, SeatSpec
from apps.panels.forms import OPTION_NAMES, BuilderInput
from apps.panels.models import Panel, PanelMember
from apps.providers.base import ProviderError
from apps.providers.catalog import Catalog, ModelInfo, get_catalog
from apps.providers.registry import gateway_from_settings

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser


class PanelInvalid(ValueError):
    """A panel that cannot be saved; ``errors`` maps a form field to a message for the person who typed it.

    Field keys: ``name``, ``seats``, ``seat-<n>-model``, ``seat-<n>-temperature``, ``seat-<n>-system_prompt``,
    ``judge``, ``writer`` and the option names (``temperature``, ``deadline_s``, ``quorum``,
    ``max_tool_calls``, ``max_completion_tokens``).
    """

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


# --- where a model runs -----------------------------------------------------------------------------------


def model_route(model: str) -> str:
    """``"demo"``, ``"endpoint"`` (a configured OpenAI-compatible server) or ``"openrouter"``.

    The same rule as ``apps.providers.registry``: ``demo/...`` is offline, ``<endpoint>/...`` goes to a
    server named in ``FUSIONROOM_ENDPOINTS``, anything else to OpenRouter.
    """
    if model.startswith("demo/"):
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


# --- runnability ------------------------------------------------------------------------------------------


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


# --- validation and saving --------------------------------------------------------------------------------

MAX_NAME_CHARS = 80  # Panel.name's max_length

_FRIENDLY = {
    "float_parsing": "Enter a number.",
    "int_parsing": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "greater_than_equal": "Must be at least {ge}.",
    "greater_than": "Must be more than {gt}.",
    "less_than_equal": "Must be at most {le}.",
    "less_than": "Must be less than {lt}.",
    "string_too_long": "Too long: at most {max_length} characters.",
}


def _message(error: Mapping[str, Any]) -> str:
    template = _FRIENDLY.get(str(error.get("type")))
    if template is None:
        return str(error.get("msg", "Not valid."))
    context = {
        key: f"{value:g}" if isinstance(value, float) else value
        for key, value in (error.get("ctx") or {}).items()
    }
    return template.format(**context)


def _validated_options(data: BuilderInput, errors: dict[str, str]) -> dict[str, Any]:
    given = {name: data.option(name) for name in OPTION_NAMES if data.option(name)}
    try:
        options = FusionOptions.model_validate(given)
    except ValidationError as exc:
        for error in exc.errors():
            errors.setdefault(str(error["loc"][0]), _message(error))
        return {}
    chosen = options.model_dump(include=set(given))
    if not data.web_tools:
        chosen["web_tools"] = False  # stored only when off: the default may change for every panel at once
    quorum = chosen.get("quorum")
    if quorum is not None and data.seats and quorum > len(data.seats):
        errors["quorum"] = f"The quorum cannot be more than the number of seats ({len(data.seats)})."
    return chosen


def _validated_seats(data: BuilderInput, errors: dict[str, str]) -> list[SeatSpec]:
    if not data.seats:
        errors["seats"] = "Add at least one model to the panel."
        return []
    if len(data.seats) > MAX_SEATS:
        errors["seats"] = f"A panel has at most {MAX_SEATS} seats; this one has {len(data.seats)}."
    seats: list[SeatSpec] = []
    for number, seat in enumerate(data.seats[:MAX_SEATS], start=1):
        if not model_is_known(seat.model):
            errors[f"seat-{number}-model"] = f"Unknown model {seat.model}: pick one from the search."
        try:
            seats.append(
                SeatSpec.model_validate(
                    {
                        "seat": number,
                        "model": seat.model,
                        "temperature": seat.temperature or None,
                        "system_prompt": seat.system_prompt or None,
                    }
                )
            )
        except ValidationError as exc:
            for error in exc.errors():
                errors.setdefault(f"seat-{number}-{error['loc'][0]}", _message(error))
    return seats


def _others(*, owner: Any, panel_id: int | None) -> QuerySet[Panel]:
    """The owner's panels other than the one being edited."""
    panels = Panel.objects.filter(owner=owner)
    return panels if panel_id is None else panels.exclude(pk=panel_id)


def _name_taken(*, owner: Any, name: str, panel_id: int | None) -> bool:
    return _others(owner=owner, panel_id=panel_id).filter(name__iexact=name).exists()


def _validate_into(
    *, owner: Any, data: BuilderInput, panel_id: int | None, errors: dict[str, str]
) -> tuple[list[SeatSpec], dict[str, Any]]:
    name = " ".join(data.name.split())
    if not name:
        errors["name"] = "Give the panel a name."
    elif len(name) > MAX_NAME_CHARS:
        errors["name"] = f"Too long: at most {MAX_NAME_CHARS} characters."
    elif _name_taken(owner=owner, name=name, panel_id=panel_id):
        errors["name"] = f"You already have a panel called “{name}”: choose another name."
    elif Panel.objects.filter(owner__isnull=True, name__iexact=name).exists():
        # The chooser lists presets and saved panels together: two identical names could not be told apart.
        errors["name"] = f"“{name}” is the name of a preset: choose another name."
    seats = _validated_seats(data, errors)
    if not data.judge:
        errors["judge"] = "Choose the judge model."
    elif not model_is_known(data.judge):
        errors["judge"] = f"Unknown model {data.judge}: pick one from the search."
    if data.writer and not model_is_known(data.writer):
        errors["writer"] = f"Unknown model {data.writer}: pick one from the search."
    options = _validated_options(data, errors)
    return seats, options


def _unique_slug(*, owner: Any, name: str, panel_id: int | None) -> str:
    base = slugify(name)[:70] or "panel"
    taken = set(_others(owner=owner, panel_id=panel_id).values_list("slug", flat=True))
    slug, counter = base, 2
    while slug in taken:
        slug, counter = f"{base}-{counter}", counter + 1
    return slug


def panel_save(*, owner: Any, data: BuilderInput, panel_id: int | None = None) -> Panel:
    """Create a custom panel for ``owner``, or replace one of theirs (``panel_id``) with ``data``.

    Raises ``PanelInvalid`` with every problem at once, and ``Panel.DoesNotExist`` when ``panel_id`` is not
    one of the owner's panels. Past turns keep their own frozen copy, so editing never rewrites history.
    """
    errors: dict[str, str] = {}
    seats, options = _validate_into(owner=owner, data=data, panel_id=panel_id, errors=errors)
    if errors:
        raise PanelInvalid(errors)
    name = " ".join(data.name.split())
    try:
        with transaction.atomic():
            if panel_id is None:
                panel = Panel(owner=owner)
            else:
                panel = Panel.objects.select_for_update().get(pk=panel_id, owner=owner)
            panel.name = name
            panel.slug = _unique_slug(owner=owner, name=name, panel_id=panel_id)
            panel.judge_model = data.judge
            panel.writer_model = data.writer or data.judge
            panel.options = options
            panel.save()
            panel.members.all().delete()
            PanelMember.objects.bulk_create(
                PanelMember(
                    panel=panel,
                    position=seat.seat,
                    model_id=seat.model,
                    temperature=seat.temperature,
                    system_prompt=seat.system_prompt or "",
                )
                for seat in seats
            )
    except IntegrityError:
        # Two saves racing for the same name: the database's unique constraint decides.
        taken = f"You already have a panel called “{name}”: choose another name."
        raise PanelInvalid({"name": taken}) from None
    return panel


def _copy_name(*, owner: Any, name: str) -> str:
    taken = {value.lower() for value in Panel.objects.filter(owner=owner).values_list("name", flat=True)}
    stem = name[:70]
    candidate, counter = f"{stem} (copy)", 2
    while candidate.lower() in taken:
        candidate, counter = f"{stem} (copy {counter})", counter + 1
    return candidate


def panel_duplicate(*, user: Any, panel: Panel) -> Panel:
    """A new panel of ``user`` with the same seats, roles and options as ``panel`` (a preset or theirs).

    The caller gets ``panel`` through ``panel_get_for``, so nobody can copy someone else's panel.
    """
    if not user.is_authenticated:
        raise Panel.DoesNotExist("Log in to save panels.")
    with transaction.atomic():
        copy = Panel.objects.create(
            owner=user,
            name=(name := _copy_name(owner=user, name=panel.name)),
            slug=_unique_slug(owner=user, name=name, panel_id=None),
            description=panel.description,
            judge_model=panel.judge_model,
            writer_model=panel.writer_model,
            options={key: value for key, value in panel.options.items() if key in OPTION_NAMES},
        )
        PanelMember.objects.bulk_create(
            PanelMember(
                panel=copy,
                position=member.position,
                model_id=member.model_id,
                temperature=member.temperature,
                system_prompt=member.system_prompt,
            )
            for member in panel.members.all()
        )
    return copy


def panel_delete(*, user: Any, panel_id: int) -> None:
    """Delete one of ``user``'s panels; ``Panel.DoesNotExist`` for presets and other people's panels.

    Turns that ran with it keep their frozen copy (``Turn.panel`` becomes empty).
    """
    deleted, _ = Panel.objects.filter(pk=panel_id, owner_id=getattr(user, "pk", None)).delete()
    if not deleted:
        raise Panel.DoesNotExist(f"No panel {panel_id} of yours")


# --- cost ---------------------------------------------------------------------------------------------------

# How the estimate is made (shown next to it in the chatroom):
# - tokens are approximated as characters / 4, rounded up;
# - every seat reads the prompt, the conversation so far and its own system prompt;
# - the judge reads that plus every answer and its own instructions; the writer reads that plus the analysis;
# - "low" assumes short outputs (an answer of SHORT_ANSWER_TOKENS, an analysis of SHORT_ANALYSIS_TOKENS);
#   "high" assumes every call writes max_completion_tokens (the bound the engine enforces);
# - web tool fees and fetched pages are not counted; provider-side caching is ignored.
CHARS_PER_TOKEN = 4
SHORT_ANSWER_TOKENS = 400
SHORT_ANALYSIS_TOKENS = 400
JUDGE_INSTRUCTION_TOKENS = 600
WRITER_INSTRUCTION_TOKENS = 300


class CostRange(NamedTuple):
    low: float
    high: float


class CostComparison(NamedTuple):
    """What a finished turn cost, and about what its writer alone would have cost (None: unknown)."""

    actual: float | None
    writer_alone: float | None


def tokens_for_chars(chars: int) -> int:
    return math.ceil(max(chars, 0) / CHARS_PER_TOKEN)


def _prices(model: str) -> tuple[float, float] | None:
    """USD per token (prompt, completion): zero for demo models, None when the catalog does not know."""
    if model_route(model) == "demo":
        return 0.0, 0.0
    info = model_info(model)
    if info is None or info.prompt_price is None or info.completion_price is None:
        return None
    return info.prompt_price, info.completion_price


def _call_cost(prices: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    return prices[0] * prompt_tokens + prices[1] * completion_tokens


def _plan(snapshot_or_panel: Panel | Mapping[str, Any]) -> tuple[list[tuple[str, str]], str, str, int]:
    if isinstance(snapshot_or_panel, Panel):
        snapshot: Mapping[str, Any] = snapshot_or_panel.snapshot()
    else:
        snapshot = snapshot_or_panel
    seats = [(str(seat["model"]), seat.get("system_prompt") or "") for seat in snapshot.get("seats", [])]
    options = snapshot.get("options") or {}
    max_tokens = int(options.get("max_completion_tokens") or FusionOptions().max_completion_tokens)
    writer = str(snapshot.get("writer") or snapshot.get("judge") or "")
    return seats, str(snapshot.get("judge", "")), writer, max_tokens


def unpriced_models(*, snapshot_or_panel: Panel | Mapping[str, Any]) -> list[str]:
    """The models of a panel whose price is unknown (why an estimate is None)."""
    seats, judge, writer, _ = _plan(snapshot_or_panel)
    models = dict.fromkeys([model for model, _ in seats] + [judge, writer])
    return [model for model in models if _prices(model) is None]


def panel_estimate_cost(
    *, snapshot_or_panel: Panel | Mapping[str, Any], prompt_chars: int, history_chars: int
) -> CostRange | None:
    """The (low, high) USD cost of one run of this panel on a prompt of ``prompt_chars`` characters after a
    conversation of ``history_chars``; None when any model's price is unknown. See the notes above."""
    seats, judge, writer, max_tokens = _plan(snapshot_or_panel)
    if not seats:
        return None
    prices = {model: _prices(model) for model in {model for model, _ in seats} | {judge, writer}}
    known = {model: price for model, price in prices.items() if price is not None}
    if len(known) != len(prices):
        return None
    context = tokens_for_chars(prompt_chars + history_chars)
    bounds: list[float] = []
    for answer, analysis in (
        (min(SHORT_ANSWER_TOKENS, max_tokens), min(SHORT_ANALYSIS_TOKENS, max_tokens)),
        (max_tokens, max_tokens),
    ):
        total = sum(
            _call_cost(known[model], context + tokens_for_chars(len(system_prompt)), answer)
            for model, system_prompt in seats
        )
        answers = answer * len(seats)
        total += _call_cost(known[judge], context + answers + JUDGE_INSTRUCTION_TOKENS, analysis)
        total += _call_cost(known[writer], context + answers + analysis + WRITER_INSTRUCTION_TOKENS, answer)
        bounds.append(total)
    return CostRange(low=bounds[0], high=bounds[1])


def _writer_completion_tokens(turn: Any) -> int:
    for step in (getattr(turn, "totals", None) or {}).get("steps", []):
        if step.get("role") == "writer":
            tokens = int((step.get("usage") or {}).get("completion_tokens") or 0)
            if tokens:
                return tokens
    return tokens_for_chars(len(getattr(turn, "final_text", "") or ""))


def history_chars_before(turns: Iterable[Any]) -> int:
    """Characters of prompts and fused answers of earlier turns: what a next turn sends as history."""
    return sum(len(turn.prompt or "") + len(turn.final_text or "") for turn in turns)


def _turn_writer(turn: Any) -> str:
    snapshot = getattr(turn, "panel_snapshot", None) or {}
    return str(snapshot.get("writer") or getattr(turn, "writer", "") or "")


def turn_cost_comparison(*, turn: Any, history_chars: int | None = None) -> CostComparison:
    """The turn's recorded cost, and an estimate of asking its writer alone the same question.

    ``turn`` is a ``chat.Turn`` or anything with the same attributes (``cost``, ``totals``, ``prompt``,
    ``final_text``, and ``panel_snapshot`` or ``writer``). "Writer alone" is one call of the writer model
    reading the prompt and ``history_chars`` characters of conversation before it, and writing an answer as
    long as the fused one (the writer's recorded completion tokens). Prices from the catalog.

    ``history_chars`` None: taken from ``turn.history_chars`` when present, else from the database for a
    ``chat.Turn`` (``turn.conversation``), else 0. Pass it when calling from async code.
    """
    actual = getattr(turn, "cost", None)
    if actual is None:
        actual = ((getattr(turn, "totals", None) or {}).get("usage") or {}).get("cost")
    writer = _turn_writer(turn)
    prices = _prices(writer) if writer else None
    if prices is None:
        return CostComparison(actual=actual, writer_alone=None)
    if history_chars is None:
        history_chars = getattr(turn, "history_chars", None)
    if history_chars is None and hasattr(turn, "conversation"):
        history_chars = history_chars_before(turn.conversation.turns.filter(position__lt=turn.position))
    prompt_tokens = tokens_for_chars(len(turn.prompt or "") + (history_chars or 0))
    writer_alone = _call_cost(prices, prompt_tokens, _writer_completion_tokens(turn))
    return CostComparison(actual=actual, writer_alone=writer_alone)
