"""The recorder's one route: text at the engine's offsets, deltas merged into one frame per window, snapshots
that join the deltas exactly, its own task, and subscribers whose leaving cancels the run.

The runs here are fed by the test (``EventFeed``), so each step waits on what happened, never on a pace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer, Turn
from apps.chat.recorder import TurnRecorder, recorder_for
from apps.fusion.schemas import (
    FinalDelta,
    FinalStarted,
    RunDone,
    RunFailed,
    RunStarted,
    SeatDelta,
    SeatDone,
    SeatReasoningDelta,
    SeatStarted,
    Timings,
    Totals,
)
from apps.providers.base import Usage
from tests.chat.conftest import (
    EventFeed,
    Reassembler,
    Room,
    Socket,
    deltas_of,
    recording,
    turn_ended,
    turn_make,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def state_errors() -> Iterator[list[str]]:
    """Errors the turn state logs (on its own logger: the ASGI application's set-up replaces the root's
    handlers, pytest's among them)."""
    handler = Collected()
    logger = logging.getLogger("apps.chat.state")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def seat_done(seat: int, content: str) -> SeatDone:
    return SeatDone(seat=seat, model="demo/atlas", content=content, usage=Usage(), timings=Timings())


async def recording_held(room: Room, settings: Any) -> tuple[EventFeed, Turn, TurnRecorder, Socket]:
    """A viewer on ``room``, then a turn recorded from a feed with a window far past the test's timeouts:
    what is held goes out only when a snapshot is asked for (or the turn ends), never on a timer."""
    settings.CHAT_DELTA_WINDOW_SECONDS = 30
    feed = EventFeed()
    viewer = await room.open()
    turn = await turn_make(room)
    recorder = TurnRecorder(turn=turn)
    await recorder.start(feed.events())
    return feed, turn, recorder, viewer


async def run_end(feed: EventFeed, turn: Turn, recorder: TurnRecorder, viewer: Socket) -> None:
    """End the fed run; once the viewer saw it end and the recording is over, close the viewer."""
    feed.put(RunDone(totals=Totals()))
    await viewer.receive_until(turn_ended(turn.pk))
    await ended(recorder)
    await viewer.close()


async def ended(recorder: TurnRecorder) -> None:
    assert recorder.task is not None
    await asyncio.wait_for(recorder.task, 10)


async def test_text_is_kept_at_the_engines_offsets_and_a_disagreement_is_logged(
    room: Room, state_errors: list[str]
) -> None:
    feed = EventFeed()
    turn, recorder, viewer, snapshot = await recording(room, feed)
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    feed.put(
        SeatStarted(seat=1, model="demo/atlas"),
        SeatReasoningDelta(seat=1, text="Think", offset=0),
        SeatReasoningDelta(seat=1, text=" more", offset=5),
        SeatDelta(seat=1, text="Hello ", offset=0),
        # A repeat, then a gap: defects upstream of the recorder, which a recount would hide.
        SeatDelta(seat=1, text="Hello ", offset=0),
        SeatDelta(seat=1, text="world", offset=6),
        SeatDelta(seat=1, text="!", offset=20),
        seat_done(1, "Hello world!"),
        RunDone(totals=Totals()),
    )

    def until_end(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return turn_ended(turn.pk)(frame)

    await viewer.receive_until(until_end)
    await ended(recorder)
    await viewer.close()

    # The page got every text once, each delta exactly where the last ended: no repeat, no hole.
    assert texts.texts["seat-1"] == "Hello world!" and texts.texts["seat-1-reasoning"] == "Think more"
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=turn.pk, seat=1)
    assert answer.content == "Hello world!" and answer.reasoning == "Think more"
    assert len(state_errors) == 2, state_errors
    assert "seat 1: a delta for offset 0 came with 6 characters held" in state_errors[0]
    assert "seat 1: a delta for offset 20 came with 11 characters held" in state_errors[1]


async def test_deltas_within_the_window_reach_the_socket_as_one_frame_one_delta_per_column(
    room: Room, settings: Any
) -> None:
    settings.CHAT_DELTA_WINDOW_SECONDS = 0.3
    feed = EventFeed()
    turn, recorder, viewer, snapshot = await recording(room, feed)
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    feed.put(SeatStarted(seat=1, model="demo/atlas"), SeatStarted(seat=2, model="demo/birch"))
    # Both seats started within one window: one frame renders both columns.
    started = await viewer.receive_until(lambda f: f["type"] == "html")
    texts.apply(started)
    assert all(f'id="turn-{turn.pk}-seat-{seat}"' in started["html"] for seat in (1, 2))

    loop = asyncio.get_running_loop()
    burst_at = loop.time()
    feed.put(
        SeatDelta(seat=1, text="Alpha ", offset=0),
        SeatDelta(seat=2, text="Beta ", offset=0),
        SeatDelta(seat=1, text="one", offset=6),
        SeatReasoningDelta(seat=2, text="hmm", offset=0),
    )
    frame = await viewer.receive()
    waited = loop.time() - burst_at
    texts.apply(frame)

    assert frame["type"] == "deltas" and waited >= 0.25, (frame["type"], waited)
    assert deltas_of(frame) == [
        {"turn": turn.pk, "seat": 1, "offset": 0, "text": "Alpha one"},
        {"turn": turn.pk, "seat": 2, "offset": 0, "text": "Beta "},
        {"turn": turn.pk, "seat": 2, "reasoning": True, "offset": 0, "text": "hmm"},
    ]
    assert texts.texts["seat-1"] == "Alpha one" and texts.texts["seat-2"] == "Beta "
    await run_end(feed, turn, recorder, viewer)


async def test_held_deltas_go_out_before_a_snapshot_and_any_other_frame_and_the_texts_join_exactly(
    room: Room, settings: Any
) -> None:
    feed, turn, recorder, viewer = await recording_held(room, settings)
    # The new turn itself is held for the window too: asking for it sends it.
    await viewer.send({"type": "resync", "turn": turn.pk})
    snapshot = await viewer.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    seen = Reassembler(strict=True)
    seen.apply(snapshot)
    feed.put(
        SeatStarted(seat=1, model="demo/atlas"),
        SeatStarted(seat=2, model="demo/birch"),
        SeatDelta(seat=1, text="Hello ", offset=0),
    )

    async def held() -> bool:
        return recorder.state.seat(1).buffer.length == 6

    await wait_for(held)
    late = await room.open()
    await late.send({"type": "resync", "turn": turn.pk})
    late_snapshot = await late.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    joined = Reassembler(strict=True)
    joined.apply(late_snapshot)
    assert joined.texts["seat-1"] == "Hello "
    # The seats' start, rendered once everything before it is in: seat 1's column carries its text so far
    # (where it ends too), so its held delta is not sent as well.
    frames: list[dict[str, Any]] = []

    def until_html(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        return frame["type"] == "html"

    started = await viewer.receive_until(until_html)
    assert "deltas" not in [f["type"] for f in frames]
    assert 'data-offset="6">Hello </div>' in started["html"]
    seen.apply(started)
    assert seen.texts["seat-1"] == "Hello "

    feed.put(
        SeatDelta(seat=2, text="Hi", offset=0),
        SeatDelta(seat=1, text="world", offset=6),
        seat_done(1, "Hello world"),
    )

    async def finished() -> bool:
        return recorder.state.seat(1).status == "done"

    await wait_for(finished)
    # A snapshot asked for sends everything held to every viewer first: the deltas (a finished column is
    # rendered as Markdown, so its own deltas go too), then the finished column.
    await late.send({"type": "resync", "turn": turn.pk})
    for socket, texts in ((viewer, seen), (late, joined)):
        frames = []

        def until_done(frame: dict[str, Any], texts: Reassembler = texts, frames: list[Any] = frames) -> bool:
            frames.append(frame)
            texts.apply(frame)
            return frame["type"] == "html" and 'data-status="done"' in frame["html"]

        await socket.receive_until(until_done)
        assert [f["type"] for f in frames] == ["deltas", "html"]
        assert deltas_of(frames[0]) == [
            {"turn": turn.pk, "seat": 2, "offset": 0, "text": "Hi"},
            {"turn": turn.pk, "seat": 1, "offset": 6, "text": "world"},
        ]
        assert texts.texts["seat-1"] == "Hello world" and texts.texts["seat-2"] == "Hi"

    feed.put(RunDone(totals=Totals()))
    await ended(recorder)
    await viewer.close()
    await late.close()


async def test_a_subscriber_that_leaves_mid_run_cancels_it_and_its_source_is_closed(room: Room) -> None:
    feed = EventFeed()
    turn = await turn_make(room)
    recorder = TurnRecorder(turn=turn)
    events = recorder.subscribe()
    await recorder.start(feed.events())
    feed.put(
        RunStarted(seats=[], judge="demo/judge", writer="demo/writer"),
        SeatStarted(seat=1, model="demo/atlas"),
    )
    feed.put(SeatDelta(seat=1, text="Half an answer", offset=0))
    seen = [await anext(events) for _ in range(3)]
    assert [event.type for event in seen] == ["run.started", "seat.started", "seat.delta"]

    await events.aclose()  # the caller is gone: closing waits for the recording to end

    assert recorder.task is not None and recorder.task.done()
    assert feed.closed and recorder_for(turn.pk) is None
    saved = await sync_to_async(Turn.objects.get)(pk=turn.pk)
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=turn.pk, seat=1)
    assert saved.status == "cancelled" and saved.failure_reason == "cancelled"
    assert answer.content == "Half an answer" and answer.status == "cancelled"


async def test_a_subscriber_reads_every_event_then_the_recorders_own_end_of_a_cancelled_run(
    room: Room,
) -> None:
    feed = EventFeed()
    turn = await turn_make(room)
    recorder = TurnRecorder(turn=turn)
    events = recorder.subscribe()
    await recorder.start(feed.events())
    feed.put(SeatStarted(seat=1, model="demo/atlas"), SeatDelta(seat=1, text="Some", offset=0))
    first = [await anext(events), await anext(events)]
    recorder.cancel()  # as a cancel from a socket, in whichever process, does
    rest = [event async for event in events]

    assert [event.type for event in first] == ["seat.started", "seat.delta"]
    assert len(rest) == 1 and isinstance(rest[0], RunFailed) and rest[0].reason == "cancelled"
    assert feed.closed
    assert (await sync_to_async(Turn.objects.get)(pk=turn.pk)).status == "cancelled"


async def test_a_run_whose_source_raises_ends_interrupted_for_viewers_subscribers_and_the_database(
    room: Room,
) -> None:
    async def broken() -> Any:
        yield RunStarted(seats=[], judge="demo/judge", writer="demo/writer")
        raise RuntimeError("boom")

    viewer = await room.open()
    turn = await turn_make(room)
    recorder = TurnRecorder(turn=turn)
    events = recorder.subscribe()
    await recorder.start(broken())
    seen = [event async for event in events]
    end = await viewer.receive_until(turn_ended(turn.pk))
    await viewer.close()

    assert [event.type for event in seen] == ["run.started", "run.failed"]
    assert isinstance(seen[-1], RunFailed) and seen[-1].reason == "unexpected_error"
    assert end["status"] == "interrupted"
    saved = await sync_to_async(Turn.objects.get)(pk=turn.pk)
    assert saved.status == Turn.Status.INTERRUPTED and "RuntimeError" in saved.error_message


async def test_a_new_turn_first_shows_as_one_snapshot_with_the_seats_that_started_in_its_window(
    room: Room, settings: Any
) -> None:
    feed, turn, recorder, viewer = await recording_held(room, settings)
    feed.put(
        RunStarted(seats=[], judge="demo/judge", writer="demo/writer"),
        SeatStarted(seat=1, model="demo/atlas"),
        SeatStarted(seat=2, model="demo/birch"),
        SeatDelta(seat=1, text="Early", offset=0),
    )

    async def applied() -> bool:
        return recorder.state.seat(1).buffer.length == 5

    await wait_for(applied)
    await viewer.send({"type": "resync", "turn": turn.pk})
    first = await viewer.receive_until(lambda f: f.get("turn") == turn.pk)

    # No fragment, no delta for a turn the page does not have yet: the snapshot covers them all.
    assert first["type"] == "snapshot" and first["status"] == "running"
    assert first["html"].count('data-status="streaming"') == 2
    texts = Reassembler(strict=True)
    texts.apply(first)
    assert texts.texts["seat-1"] == "Early"
    await viewer.receive_until(lambda f: f["type"] == "snapshot")  # the reply to the resync itself
    feed.put(SeatDelta(seat=1, text=" and on", offset=5), RunDone(totals=Totals()))
    later = []

    def until_end(frame: dict[str, Any]) -> bool:
        later.append(frame["type"])
        texts.apply(frame)
        return turn_ended(turn.pk)(frame)

    await viewer.receive_until(until_end)
    assert later == ["deltas", "snapshot"] and texts.texts["seat-1"] == "Early and on"
    await ended(recorder)
    await viewer.close()


async def test_seats_finishing_within_one_window_are_one_frame_rendered_once(
    room: Room, settings: Any
) -> None:
    feed, turn, recorder, viewer = await recording_held(room, settings)
    feed.put(*(SeatStarted(seat=seat, model="demo/atlas") for seat in (1, 2, 3)))
    await viewer.send({"type": "resync", "turn": turn.pk})
    await viewer.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    await viewer.receive_until(lambda f: f["type"] == "snapshot" and f["turn"] == turn.pk)
    feed.put(*(seat_done(seat, f"Answer {seat}") for seat in (1, 2, 3)))

    async def finished() -> bool:
        return recorder.state.seats_finished == 3

    await wait_for(finished)
    await viewer.send({"type": "resync", "turn": turn.pk})
    done = await viewer.receive_until(lambda f: f["type"] in ("html", "snapshot"))

    assert done["type"] == "html" and done["html"].count('data-status="done"') == 3
    assert done["html"].count('class="progress"') == 1 and "panel 3/3 done" in done["html"]
    await run_end(feed, turn, recorder, viewer)


async def test_the_fused_answer_has_its_place_on_the_page_before_its_first_delta(
    room: Room, settings: Any
) -> None:
    settings.CHAT_DELTA_WINDOW_SECONDS = 0.3
    feed = EventFeed()
    turn, recorder, viewer, snapshot = await recording(room, feed)
    texts = Reassembler(strict=True)
    texts.apply(snapshot)
    feed.put(
        SeatStarted(seat=1, model="demo/atlas"),
        SeatDelta(seat=1, text="Panel", offset=0),
        seat_done(1, "Panel"),
        FinalStarted(model="demo/writer"),
        FinalDelta(text="Fused", offset=0),
        FinalDelta(text=" answer", offset=5),
    )
    frames: list[dict[str, Any]] = []

    def until_final(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        texts.apply(frame)
        return any(delta.get("final") for delta in deltas_of(frame))

    await viewer.receive_until(until_final)

    # The writer's start went out at once, with the final's live text, before any of its deltas.
    started = next(i for i, f in enumerate(frames) if f["type"] == "html" and "-final-text" in f["html"])
    first_delta = next(i for i, f in enumerate(frames) if any(d.get("final") for d in deltas_of(f)))
    assert started < first_delta and texts.texts["final"] == "Fused answer"
    await run_end(feed, turn, recorder, viewer)
