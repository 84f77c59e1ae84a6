"""What the panel builder does: save, duplicate and delete custom panels.

Contract used by the chatroom and the API (keep these signatures):

- ``panel_save(*, owner, data, panel_id=None) -> Panel`` (raises ``PanelInvalid`` with per-field messages)
- ``panel_duplicate(*, user, panel) -> Panel`` and ``panel_delete(*, user, panel_id) -> None``

Beside it, ``runnability.py`` (``panel_runnability(*, panel) -> Runnability(runnable, reasons, warnings)``)
and ``costs.py`` (``panel_estimate_cost(*, snapshot_or_panel, prompt_chars, history_chars, usage=None) ->
CostEstimate | None``, ``turn_cost_comparison(*, turn) -> CostComparison(actual, writer_alone)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.text import slugify
from pydantic import ValidationError

from apps.fusion.schemas import MAX_SEATS, FusionOptions, SeatSpec
from apps.panels.forms import OPTION_NAMES, BuilderInput
from apps.panels.models import Panel, PanelMember
from apps.panels.runnability import model_is_known


class PanelInvalid(ValueError):
    """A panel that cannot be saved; ``errors`` maps a form field to a message for the person who typed it.

    Field keys: ``name``, ``seats``, ``seat-<n>-model``, ``seat-<n>-temperature``, ``seat-<n>-system_prompt``,
    ``judge``, ``writer`` and the option names (``temperature``, ``deadline_s``, ``quorum``,
    ``max_tool_calls``, ``max_completion_tokens``).
    """

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


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
