"""The turn's fragments carry ids, offsets and counts as machine values, whatever the site's number format."""

from __future__ import annotations

from typing import Any

from apps.chat import rendering
from apps.chat.state import SeatState, TextBuffer, TurnState


def state_make() -> TurnState:
    text = "word " * 300  # 1,500 characters: past a thousands separator
    return TurnState(
        turn_id=12345,
        conversation_id=6789,
        position=1234,
        prompt="Which cache?",
        status="running",
        phase="panel",
        seats=[SeatState(seat=1, model="vendor/a", name="Model A", is_demo=False, buffer=TextBuffer(text))],
        judge="vendor/judge",
        writer="vendor/writer",
        final=TextBuffer(text),
        final_started=True,
    )


def test_ids_and_offsets_are_never_grouped_even_with_a_thousands_separator_on(settings: Any) -> None:
    settings.USE_THOUSAND_SEPARATOR = True
    settings.NUMBER_GROUPING = 3
    state = state_make()
    html = (
        rendering.turn_html(state) + rendering.column_html(state, state.seat(1)) + rendering.final_html(state)
    )

    # room.js reads these back as numbers: "1,500" would be a gap at every delta.
    assert 'id="turn-12345-seat-1-text" data-offset="1500"' in html
    assert 'data-turn="12345" data-position="1234"' in html
    assert (
        'id="turn-12345-final-text"' in html
        and 'data-offset="1500"' in html.split('id="turn-12345-final-text"')[1]
    )
    assert "12,345" not in html and "1,500" not in html and "1,234" not in html
