"""Saving, duplicating and deleting custom panels: every validation case, with the message a person sees."""

from __future__ import annotations

from typing import Any

import pytest

from apps.panels.forms import BuilderInput, SeatInput
from apps.panels.models import Panel
from apps.panels.selectors import panel_get_for, panel_list_for
from apps.panels.services import PanelInvalid, panel_delete, panel_duplicate, panel_save

pytestmark = pytest.mark.django_db


def _draft(**changes: Any) -> BuilderInput:
    data: dict[str, Any] = {
        "name": "Twins",
        "seats": (
            SeatInput("demo/atlas", "0.3", "Be brief."),
            SeatInput("demo/atlas"),
            SeatInput("demo/cedar"),
        ),
        "judge": "demo/judge",
        "writer": "",
        "options": {},
    }
    data.update(changes)
    return BuilderInput(**data)


def _errors(owner: Any, data: BuilderInput, panel_id: int | None = None) -> dict[str, str]:
    with pytest.raises(PanelInvalid) as caught:
        panel_save(owner=owner, data=data, panel_id=panel_id)
    return caught.value.errors


def test_it_saves_the_same_model_twice_with_per_seat_options(alice: Any) -> None:
    panel = panel_save(owner=alice, data=_draft(options={"quorum": "2", "temperature": "0.7"}))
    seats = list(panel.members.values_list("position", "model_id", "temperature", "system_prompt"))
    assert seats == [
        (1, "demo/atlas", 0.3, "Be brief."),
        (2, "demo/atlas", None, ""),
        (3, "demo/cedar", None, ""),
    ]
    assert panel.owner == alice and panel.slug == "twins"
    assert panel.options == {"quorum": 2, "temperature": 0.7}


def test_the_writer_defaults_to_the_judge(alice: Any) -> None:
    panel = panel_save(owner=alice, data=_draft())
    assert (panel.judge_model, panel.writer_model) == ("demo/judge", "demo/judge")
    other = panel_save(owner=alice, data=_draft(name="Split", writer="demo/writer"))
    assert (other.judge_model, other.writer_model) == ("demo/judge", "demo/writer")


def test_a_saved_panel_is_listed_for_its_owner_only(alice: Any, bob: Any) -> None:
    panel = panel_save(owner=alice, data=_draft())
    assert panel in panel_list_for(user=alice)
    assert panel not in panel_list_for(user=bob)
    with pytest.raises(Panel.DoesNotExist):
        panel_get_for(user=bob, panel_id=panel.pk)


def test_it_refuses_a_panel_without_seats(alice: Any) -> None:
    assert _errors(alice, _draft(seats=()))["seats"] == "Add at least one model to the panel."


def test_it_refuses_more_than_eight_seats(alice: Any) -> None:
    errors = _errors(alice, _draft(seats=tuple(SeatInput("demo/birch") for _ in range(9))))
    assert errors["seats"] == "A panel has at most 8 seats; this one has 9."


def test_it_names_an_unknown_model_where_it_sits(alice: Any) -> None:
    seats = (SeatInput("demo/atlas"), SeatInput("nobody/no-such-model"))
    errors = _errors(alice, _draft(seats=seats, judge="demo/nope", writer="vendor/ghost"))
    assert errors["seat-2-model"] == "Unknown model nobody/no-such-model: pick one from the search."
    assert errors["judge"] == "Unknown model demo/nope: pick one from the search."
    assert errors["writer"] == "Unknown model vendor/ghost: pick one from the search."
    assert "seat-1-model" not in errors


def test_models_from_the_shipped_catalog_are_known_without_a_key(alice: Any) -> None:
    panel = panel_save(
        owner=alice,
        data=_draft(seats=(SeatInput("deepseek/deepseek-v4-pro"),), judge="~anthropic/claude-opus-latest"),
    )
    assert panel.members.get().model_id == "deepseek/deepseek-v4-pro"


def test_models_of_a_configured_endpoint_are_accepted(alice: Any, settings: Any) -> None:
    settings.FUSIONROOM_ENDPOINTS = {"ollama": "http://127.0.0.1:9/v1"}
    panel = panel_save(owner=alice, data=_draft(seats=(SeatInput("ollama/llama3.3"),)))
    assert panel.members.get().model_id == "ollama/llama3.3"


@pytest.mark.parametrize("name", ["", "   "])
def test_it_refuses_an_empty_name(alice: Any, name: str) -> None:
    assert _errors(alice, _draft(name=name))["name"] == "Give the panel a name."


def test_it_refuses_the_name_of_a_preset(alice: Any) -> None:
    assert _errors(alice, _draft(name="demo (OFFLINE)"))["name"] == (
        "“demo (OFFLINE)” is the name of a preset: choose another name."
    )


def test_it_refuses_a_name_the_user_already_used_whatever_the_case(alice: Any, bob: Any) -> None:
    panel_save(owner=alice, data=_draft(name="Research"))
    assert _errors(alice, _draft(name="  research "))["name"] == (
        "You already have a panel called “research”: choose another name."
    )
    # Someone else may use the name, and editing a panel may keep its own name.
    panel_save(owner=bob, data=_draft(name="Research"))
    mine = Panel.objects.get(owner=alice, name="Research")
    panel_save(owner=alice, data=_draft(name="Research", judge="demo/writer"), panel_id=mine.pk)


def test_option_errors_come_back_per_field(alice: Any) -> None:
    options = {
        "temperature": "3",
        "deadline_s": "soon",
        "quorum": "4",
        "max_tool_calls": "17",
        "max_completion_tokens": "0",
    }
    errors = _errors(alice, _draft(options=options))
    assert errors["temperature"] == "Must be at most 2."
    assert errors["deadline_s"] == "Enter a number."
    assert errors["max_tool_calls"] == "Must be at most 16."
    assert errors["max_completion_tokens"] == "Must be at least 1."
    assert "quorum" not in errors  # checked against the seats once the options themselves are valid


def test_the_quorum_cannot_exceed_the_seats(alice: Any) -> None:
    errors = _errors(alice, _draft(options={"quorum": "4"}))
    assert errors == {"quorum": "The quorum cannot be more than the number of seats (3)."}


def test_seat_option_errors_name_the_seat(alice: Any) -> None:
    seats = (SeatInput("demo/atlas"), SeatInput("demo/birch", "2.5"), SeatInput("demo/cedar", "", "x" * 8001))
    errors = _errors(alice, _draft(seats=seats))
    assert errors["seat-2-temperature"] == "Must be at most 2."
    assert errors["seat-3-system_prompt"] == "Too long: at most 8000 characters."


def test_every_problem_is_reported_at_once(alice: Any) -> None:
    errors = _errors(alice, _draft(name="", seats=(), judge="", options={"temperature": "-1"}))
    assert set(errors) == {"name", "seats", "judge", "temperature"}


def test_editing_replaces_seats_roles_and_options(alice: Any) -> None:
    panel = panel_save(owner=alice, data=_draft(options={"quorum": "2"}))
    edited = panel_save(
        owner=alice,
        data=_draft(
            name="Duo", seats=(SeatInput("demo/cedar"), SeatInput("demo/birch")), writer="demo/writer"
        ),
        panel_id=panel.pk,
    )
    assert edited.pk == panel.pk
    panel.refresh_from_db()
    assert panel.name == "Duo" and panel.slug == "duo" and panel.options == {}
    assert list(panel.members.values_list("model_id", flat=True)) == ["demo/cedar", "demo/birch"]
    assert panel.writer_model == "demo/writer"


def test_nobody_edits_someone_elses_panel(alice: Any, bob: Any) -> None:
    panel = panel_save(owner=alice, data=_draft())
    with pytest.raises(Panel.DoesNotExist):
        panel_save(owner=bob, data=_draft(name="Mine now"), panel_id=panel.pk)
    panel.refresh_from_db()
    assert panel.name == "Twins"


def test_duplicating_a_preset_makes_an_editable_copy(alice: Any) -> None:
    quality = Panel.objects.get(owner=None, slug="quality")
    copy = panel_duplicate(user=alice, panel=quality)
    again = panel_duplicate(user=alice, panel=quality)
    assert (copy.name, again.name) == ("Quality (copy)", "Quality (copy 2)")
    assert copy.owner == alice and copy.openrouter_preset == "" and copy.preset_order is None
    assert list(copy.members.values_list("model_id", flat=True)) == list(
        quality.members.values_list("model_id", flat=True)
    )
    assert (copy.judge_model, copy.writer_model) == (quality.judge_model, quality.writer_model)
    assert copy.slug != again.slug


def test_deleting_is_for_the_owner_and_never_for_presets(alice: Any, bob: Any) -> None:
    panel = panel_save(owner=alice, data=_draft())
    preset = Panel.objects.get(owner=None, slug="demo")
    with pytest.raises(Panel.DoesNotExist):
        panel_delete(user=bob, panel_id=panel.pk)
    with pytest.raises(Panel.DoesNotExist):
        panel_delete(user=alice, panel_id=preset.pk)
    assert Panel.objects.filter(pk__in=[panel.pk, preset.pk]).count() == 2
    panel_delete(user=alice, panel_id=panel.pk)
    assert not Panel.objects.filter(pk=panel.pk).exists()
