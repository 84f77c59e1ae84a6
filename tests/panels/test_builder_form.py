"""The builder's form state: parsing a post, and what each seat button does to it (no database)."""

from __future__ import annotations

from django.http import QueryDict

from apps.panels.forms import (
    BuilderAction,
    BuilderInput,
    SeatInput,
    builder_action_from_post,
    builder_apply,
    builder_focus_after,
    builder_input_from_post,
)


def _post(pairs: list[tuple[str, str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in pairs:
        data.appendlist(key, value)
    return data


def _three() -> BuilderInput:
    return BuilderInput(
        name="Trio",
        seats=(
            SeatInput("demo/atlas", "0.2"),
            SeatInput("demo/birch"),
            SeatInput("demo/cedar", "", "Be brief."),
        ),
        judge="demo/judge",
    )


def test_it_reads_seats_in_order_with_their_own_options() -> None:
    post = _post(
        [
            ("name", "  Mine  "),
            ("seat_model", "demo/atlas"),
            ("seat_temperature", "0.5"),
            ("seat_system_prompt", "Be terse."),
            ("seat_model", "demo/atlas"),
            ("seat_temperature", ""),
            ("seat_system_prompt", ""),
            ("judge", "demo/judge"),
            ("quorum", "2"),
        ]
    )
    data = builder_input_from_post(post)
    assert data.name == "Mine"
    assert data.seats == (SeatInput("demo/atlas", "0.5", "Be terse."), SeatInput("demo/atlas", "", ""))
    assert data.judge == "demo/judge" and data.writer == ""
    assert data.option("quorum") == "2" and data.option("deadline_s") == ""


def test_it_reads_which_button_was_pressed() -> None:
    def action(*pairs: tuple[str, str]) -> BuilderAction:
        return builder_action_from_post(_post(list(pairs)))

    assert action(("add_model", "demo/atlas")) == BuilderAction("add", "demo/atlas")
    assert action(("set_judge", "demo/judge")) == BuilderAction("judge", "demo/judge")
    assert action(("seat_action", "down:2")) == BuilderAction("down", seat=2)
    assert action(("seat_action", "explode:2")).kind == "save"
    assert action(("save", "1")).kind == "save"


def test_adding_the_same_model_again_makes_a_new_seat() -> None:
    data, status = builder_apply(_three(), BuilderAction("add", "demo/atlas"))
    assert [seat.model for seat in data.seats] == ["demo/atlas", "demo/birch", "demo/cedar", "demo/atlas"]
    assert status == "Added demo/atlas as seat 4."


def test_it_refuses_a_ninth_seat_and_says_why() -> None:
    full = BuilderInput(seats=tuple(SeatInput("demo/atlas") for _ in range(8)))
    data, status = builder_apply(full, BuilderAction("add", "demo/birch"))
    assert len(data.seats) == 8
    assert "at most 8 seats" in status


def test_moving_a_seat_keeps_its_options_with_it() -> None:
    data, status = builder_apply(_three(), BuilderAction("up", seat=3))
    assert data.seats[1] == SeatInput("demo/cedar", "", "Be brief.")
    assert data.seats[2] == SeatInput("demo/birch")
    assert status == "Moved demo/cedar to seat 2."
    data, _ = builder_apply(data, BuilderAction("down", seat=1))
    assert [seat.model for seat in data.seats] == ["demo/cedar", "demo/atlas", "demo/birch"]


def test_moving_past_either_end_changes_nothing() -> None:
    data, status = builder_apply(_three(), BuilderAction("up", seat=1))
    assert data == _three()
    assert status == "Seat 1 is already first."
    data, status = builder_apply(_three(), BuilderAction("down", seat=3))
    assert data == _three() and status == "Seat 3 is already last."


def test_removing_a_seat_closes_the_gap() -> None:
    data, status = builder_apply(_three(), BuilderAction("remove", seat=2))
    assert [seat.model for seat in data.seats] == ["demo/atlas", "demo/cedar"]
    assert status == "Removed seat 2 (demo/birch)."
    same, status = builder_apply(data, BuilderAction("remove", seat=5))
    assert same == data and status == "That seat is no longer there."


def test_judge_and_writer_buttons_set_the_roles() -> None:
    data, _ = builder_apply(_three(), BuilderAction("writer", "demo/writer"))
    data, _ = builder_apply(data, BuilderAction("judge", "demo/atlas"))
    assert (data.judge, data.writer) == ("demo/atlas", "demo/writer")


def test_focus_follows_the_moved_seat_and_the_gap_after_a_removal() -> None:
    moved, _ = builder_apply(_three(), BuilderAction("up", seat=3))
    assert builder_focus_after(moved, BuilderAction("up", seat=3)) == "seat-2-up"
    # At the top the up button is disabled: focus goes to the same seat's down button.
    assert builder_focus_after(moved, BuilderAction("up", seat=2)) == "seat-1-down"
    assert builder_focus_after(moved, BuilderAction("down", seat=2)) == "seat-3-up"
    removed, _ = builder_apply(_three(), BuilderAction("remove", seat=3))
    assert builder_focus_after(removed, BuilderAction("remove", seat=3)) == "seat-2-remove"
    assert builder_focus_after(BuilderInput(), BuilderAction("remove", seat=1)) == "seats-heading"
    assert builder_focus_after(_three(), BuilderAction("add", "demo/atlas")) == ""
