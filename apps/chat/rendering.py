"""Server-rendered pieces of a turn and the JSON frames that carry them down the WebSocket.

Every piece of HTML comes from a template under ``templates/chat/``; model text reaches the page either
escaped by the template engine or through ``render_markdown``. Frames are JSON text, built once by the
recorder (per event, or per window of text deltas) and fanned out unchanged to every socket of the
conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.template.loader import render_to_string

from apps.chat.state import SeatState, TextBuffer, TurnState


def _render(template: str, **context: Any) -> str:
    return render_to_string(f"chat/{template}", context)


def turn_html(state: TurnState, *, interactive: bool = True) -> str:
    return _render("_turn.html", turn=state, interactive=interactive)


def column_html(state: TurnState, seat: SeatState) -> str:
    return _render("_column.html", turn=state, seat=seat)


def tools_html(state: TurnState, seat: SeatState) -> str:
    return _render("_tools.html", turn=state, seat=seat)


def analysis_html(state: TurnState) -> str:
    return _render("_analysis.html", turn=state)


def final_html(state: TurnState) -> str:
    return _render("_final.html", turn=state)


def progress_html(state: TurnState) -> str:
    return _render("_progress.html", turn=state)


def frame(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def deltas_frame(turn_id: int, columns: Iterable[tuple[int, bool, int, str]]) -> str:
    """Text deltas of one turn, one per column that moved, as one frame applied in order::

        {type: "deltas", deltas: [{turn, seat | final: true, reasoning?: true, offset, text}, ...]}

    ``columns`` holds ``(seat, reasoning, offset, text)``, seat 0 being the fused answer; ``offset`` is the
    engine's, in code points, for the page's exact checks (a gap asks a snapshot, a repeat is trimmed).
    """
    deltas: list[dict[str, Any]] = []
    for seat, reasoning, offset, text in columns:
        delta: dict[str, Any] = {"turn": turn_id}
        if seat:
            delta["seat"] = seat
        else:
            delta["final"] = True
        if reasoning:
            delta["reasoning"] = True
        delta["offset"] = offset
        delta["text"] = text
        deltas.append(delta)
    return frame({"type": "deltas", "deltas": deltas})


def html_frame(state: TurnState, fragments: list[str]) -> str:
    """Fragments to swap in by id, with the turn's status so room.js keeps ``data-turn-status`` current."""
    return frame({"type": "html", "turn": state.turn_id, "status": state.status, "html": "".join(fragments)})


def snapshot_frame(state: TurnState) -> str:
    """The whole turn as it is now; deltas that follow on the same channel continue from its offsets."""
    html = turn_html(state)
    return frame({"type": "snapshot", "turn": state.turn_id, "status": state.status, "html": html})


def error_frame(message: str) -> str:
    return frame({"type": "error", "message": message})


def warm_up() -> None:
    """Render every fragment of a sample turn, running and then finished, as the recorder would.

    The first render loads the templates, their tag libraries and what their tags read; done here at
    start-up (``fusionroom/warmup.py``), it is not done on the event loop while the first runs stream. Call it
    with an event loop running, as the recorder does: a finished turn's comparison block then stays a slot
    instead of reading the database.
    """
    seat = SeatState(
        seat=1,
        model="warm-up/model",
        name="Warm-up",
        is_demo=False,
        status="streaming",
        buffer=TextBuffer("*Warm*"),
    )
    state = TurnState(
        turn_id=1,
        conversation_id=1,
        position=1,
        prompt="Warm up.",
        status="running",
        phase="panel",
        seats=[seat],
        judge="warm-up/judge",
        writer="warm-up/writer",
        final=TextBuffer("*Warm*"),
        final_started=True,
    )
    turn_html(state)
    for fragment in (column_html, tools_html):
        fragment(state, seat)
    for whole in (analysis_html, final_html, progress_html):
        whole(state)
    seat.status, state.final_done = "done", True
    state.status, state.phase = "done", "finished"
    turn_html(state)
