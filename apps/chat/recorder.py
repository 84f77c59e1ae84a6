"""The run recorder: records a turn's events in a task of its own, while viewers and callers watch.

::

    recorder = TurnRecorder(turn=turn)
    events = recorder.subscribe()  # only a caller that reads the events itself (the API)
    await recorder.start(run_fusion(request, gateway=gateway))  # returns once it listens; the run goes on

One pump (``_pump``, in the recorder's task, owned by the server process: closing a tab does not stop it)
reads the source, and for each event

- folds it into the turn's live state (``state.TurnState.apply``; text deltas at the engine's offsets);
- broadcasts it to the channel-layer group ``conversation.<id>``. Within a window of
  ``CHAT_DELTA_WINDOW_SECONDS`` from the first event held (0 by default: until the recorder is idle, which is
  the end of the event loop's pass that brought the event), text deltas are held and every other event only
  marks the parts of the turn it changed; at the window's end every column that moved goes out as one
  ``deltas`` frame (``rendering.deltas_frame``; a streaming column rendered again in the window carries its
  text itself), then the marked parts as one ``html`` frame, rendered then, once, from the state (three seats
  that start or finish together cost one frame, not three). The writer's
  start ends the window at once (its frame makes the place its deltas go to). A new turn goes out as a whole
  snapshot instead (it covers everything held), and a turn's end as a whole snapshot, written to the
  database first, at once;
- hands it to the subscribers (``subscribe``), unchanged; a subscriber that leaves cancels the run.

The turn's state is written by the shared flusher (``flusher.py``: every ``CHAT_FLUSH_SECONDS``, backing off
under load within the crash bound); its final state by the recorder itself, before the last event is
broadcast or handed out, so whoever sees a turn end finds it in the database. The recorder listens on its
own channel (saved in ``Turn.recorder_channel``; ``listener.py``) for snapshot requests and cancels. One
lock serialises broadcasts and snapshot replies, and a snapshot first sends the deltas it holds, so a
snapshot and the deltas after it reach a consumer in order: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.utils import timezone

from apps.chat import rendering
from apps.chat.flusher import (
    FINAL_WRITE_RETRIES,
    changes_collect,
    flusher_join,
    flusher_leave,
    turns_write,
    write_lock,
)
from apps.chat.listener import listen, listener_stop
from apps.chat.models import Turn
from apps.chat.state import TERMINAL_STATUSES, TurnState, turn_state_initial
from apps.fusion.calls import unreported_cost
from apps.fusion.engine import totals_build
from apps.fusion.schemas import (
    AnalysisDone,
    AnalysisFailed,
    AnalysisStarted,
    FinalDelta,
    FinalDone,
    FinalStarted,
    FusionEvent,
    RunFailed,
    SeatDelta,
    SeatDone,
    SeatFailed,
    SeatReasoningDelta,
    SeatStarted,
    SeatToolCall,
    SeatToolResult,
    StepStats,
    Timings,
    Totals,
)
from apps.panels.costs import tokens_for_chars
from apps.providers.base import Usage
from apps.providers.registry import gateway_from_settings

logger = logging.getLogger(__name__)

# Recorders alive in this process, by turn id: cancelling a local run needs no channel-layer round trip.
_LIVE: dict[int, TurnRecorder] = {}
# Their tasks, referenced until they end (the event loop itself keeps only weak references).
_TASKS: set[asyncio.Task[None]] = set()
# A part of a turn's page, re-rendered as a whole: ("column" | "tools", seat), or ("progress" | "analysis" |
# "final", 0).
Part = tuple[str, int]
# For subscribers: the recording is over. A recorder that failed hands them its exception instead.
_END = object()
_TERMINAL_TYPES = frozenset({"run.done", "run.failed"})


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def recorder_for(turn_id: int) -> TurnRecorder | None:
    return _LIVE.get(turn_id)


def recorders_live() -> list[TurnRecorder]:
    """The recorders running in this process."""
    return list(_LIVE.values())


class TurnRecorder:
    """Record one turn's run; see the module docstring for the guarantees."""

    def __init__(
        self, *, turn: Turn, channel_layer_alias: str = "default", state: TurnState | None = None
    ) -> None:
        self.turn_id: int = turn.pk
        self.conversation_id: int = turn.conversation_id
        self.group = conversation_group(turn.conversation_id)
        # A retry of failed seats starts from the turn as saved (its kept seats done); a new run from nothing.
        self.state: TurnState = state if state is not None else turn_state_initial(turn)
        self.channel_layer_alias = channel_layer_alias
        self.layer: BaseChannelLayer | None = None
        self.channel = ""
        self.task: asyncio.Task[None] | None = None
        # ``time.monotonic()`` of the last write that included this turn (the flusher's heartbeat clock).
        self.last_write = 0.0
        self._lock = asyncio.Lock()
        self._closed = False
        self._cancel_requested = False
        # True while the pump waits for the source: only then may a cancel interrupt it.
        self._reading = False
        self._listener: asyncio.Task[None] | None = None
        self._subscribers: list[asyncio.Queue[Any]] = []
        # Text held for the next ``deltas`` frame: (seat or 0 for the fused answer, reasoning?) -> where it
        # starts, its pieces.
        self._held: dict[tuple[int, bool], tuple[int, list[str]]] = {}
        # Parts of the turn to render at the window's end (``Part``), or the whole turn (a snapshot).
        self._marked: set[Part] = set()
        self._snapshot_due = False
        self._held_timer: asyncio.TimerHandle | None = None
        self._senders: set[asyncio.Task[None]] = set()
        self._window = float(getattr(settings, "CHAT_DELTA_WINDOW_SECONDS", 0.0))
        self._started = time.perf_counter()

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, events: AsyncIterator[FusionEvent]) -> None:
        """Take the turn and record ``events`` in a task of the recorder's own; return once it listens.

        If the run is cancelled (``cancel()``, a ``run.cancel`` message, a subscriber that leaves), the
        source is closed (which stops every request in flight) and the turn ends with a
        ``RunFailed(reason="cancelled")`` of the recorder's. If the source raises, with a
        ``RunFailed(reason="unexpected_error")`` and the turn marked interrupted.
        """
        try:
            await self._open()
        except BaseException:
            await self._close(message="The run could not start.")
            raise
        task = asyncio.create_task(self._run(events), name=f"turn-{self.turn_id}")
        self.task = task
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    def subscribe(self) -> AsyncGenerator[FusionEvent, None]:
        """The events as they are recorded, for one reader in a task of its own (the API's request).
        Subscribe before ``start``: nothing is replayed.

        A reader that stops before the turn's last event (closes the iterator, or its task is cancelled)
        cancels the run: the turn ends cancelled, what streamed kept; closing it waits for the recording to
        end. If the recorder itself fails, the reader gets its exception.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._closed:
            queue.put_nowait(_END)
        else:
            self._subscribers.append(queue)
        return self._subscription(queue)

    def cancel(self) -> None:
        """Stop the run: the source is closed, what streamed is kept, the turn ends as cancelled."""
        if self._cancel_requested or self._closed:
            return
        self._cancel_requested = True
        # Between two events the pump sees the request itself; only a wait for the source is interrupted,
        # never a broadcast or a write.
        if self._reading and self.task is not None:
            self.task.cancel()

    async def _open(self) -> None:
        """Listen on a fresh channel, save it on the turn, show the turn to all."""
        self.layer = get_channel_layer(self.channel_layer_alias)
        if self.layer is not None:
            self.channel = await self.layer.new_channel()
        await _turn_take(turn_id=self.turn_id, recorder_channel=self.channel)
        self.last_write = time.monotonic()
        _LIVE[self.turn_id] = self
        flusher_join(self)
        if self.layer is not None:
            self._listener = asyncio.create_task(
                listen(self.layer, self.channel, snapshot=self._snapshot_send, cancel=self.cancel),
                name=f"turn-{self.turn_id}-listen",
            )
        # The turn appears on the pages at the window's end, seats already started (they start at once).
        self._snapshot_due = True
        self._window_open()

    async def _run(self, events: AsyncIterator[FusionEvent]) -> None:
        error: BaseException | None = None
        try:
            try:
                await self._pump(events)
            except asyncio.CancelledError:
                # Not a ``cancel()``, which ends the pump quietly: the server is shutting down. The turn
                # ends interrupted, keeping what was written.
                await self._close(message="The server stopped while this turn was running.")
                raise
            except Exception as exc:
                error = exc
                logger.exception("turn %s: recording failed", self.turn_id)
                await self._close(message=f"The run stopped unexpectedly ({type(exc).__name__}).")
            else:
                await self._close()
        except Exception as exc:  # closing failed too: the stale-turn reaper ends the turn later
            error = error or exc
            logger.exception("turn %s: ending the recording failed", self.turn_id)
        finally:
            for queue in self._subscribers:
                queue.put_nowait(_END if error is None else error)

    async def _close(self, *, message: str = "The run stopped before it finished.") -> None:
        """Finish: a turn not yet ended is marked interrupted, the last state is written, listening stops."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.state.status not in TERMINAL_STATUSES:
                self.state.finish(status="interrupted", reason="interrupted", message=message)
                await self._flush_or_log()
                async with self._lock:
                    await self._broadcast_snapshot()
            else:
                await self._flush_or_log()
        finally:
            _LIVE.pop(self.turn_id, None)
            flusher_leave(self)
            self._window_close()
            listener = self._listener
            if listener is not None and self.layer is not None:
                await listener_stop(self.layer, self.channel, listener)

    # --- events ------------------------------------------------------------------------------------------

    async def _pump(self, events: AsyncIterator[FusionEvent]) -> None:
        """Record every event of ``events`` until the turn ends, the source does or a cancel comes."""
        source = aiter(events)
        failure: Exception | None = None
        try:
            while not self._cancel_requested:
                self._reading = True
                try:
                    event = await anext(source)
                except StopAsyncIteration:
                    return  # a source that ends without a last event: ``_close`` marks the turn interrupted
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not self._cancel_requested or task is None:
                        raise
                    task.uncancel()  # ours: what follows (the last writes and frames) must not see it
                    break
                except Exception as exc:
                    failure = exc
                    break
                finally:
                    self._reading = False
                await self._record(event)
                if event.type in _TERMINAL_TYPES:
                    return
        finally:
            await _source_close(source, self.turn_id)
        if failure is not None:
            logger.error("turn %s: the run raised", self.turn_id, exc_info=failure)
            stopped = RunFailed(
                reason="unexpected_error",
                message=f"The run stopped unexpectedly ({type(failure).__name__}).",
                partial_final=self.state.final_text,
                totals=self._totals_so_far(),
            )
            await self._record(stopped, status="interrupted")
        else:
            await self._record(self._cancelled_event())

    async def _record(self, event: FusionEvent, *, status: str | None = None) -> None:
        state = self.state
        if isinstance(event, SeatDelta | SeatReasoningDelta | FinalDelta):
            offset, text = state.delta_apply(event)
            if text:
                if isinstance(event, FinalDelta):
                    self._hold((0, False), offset, text)
                else:
                    self._hold((event.seat, isinstance(event, SeatReasoningDelta)), offset, text)
        else:
            # Under the lock: a frame being rendered never shows a turn ended before it is saved.
            async with self._lock:
                state.apply(event)
                if status is not None:
                    state.status = status
                if state.status in TERMINAL_STATUSES:
                    # The database first: whoever sees the turn end must find it saved. If it cannot be
                    # saved, the viewers still see it end rather than a turn that seems to run for ever.
                    await self._flush_or_log()
                    await self._broadcast_snapshot()
                else:
                    self._marked.add(("progress", 0))
                    self._marked.update(_parts_for(event))
                    if isinstance(event, FinalStarted):
                        # It puts the fused answer's live text on the pages: there before its first
                        # delta, which this pump does not take until the frame is sent.
                        await self._held_broadcast()
                    else:
                        self._window_open()
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _hold(self, key: tuple[int, bool], offset: int, text: str) -> None:
        """Keep a delta's text for the next ``deltas`` frame, merged with its column's held text."""
        held = self._held.get(key)
        if held is None:
            self._held[key] = (offset, [text])
        else:
            held[1].append(text)
        self._window_open()

    def _window_open(self) -> None:
        if self._held_timer is None:
            # The window starts with the first event held: none waits longer than it.
            loop = asyncio.get_running_loop()
            self._held_timer = loop.call_later(self._window, self._held_due)

    def _window_close(self) -> None:
        """What is held is going out now: the window's timer has nothing left to send."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def _held_due(self) -> None:
        self._held_timer = None
        if self._held or self._marked or self._snapshot_due:
            sender = asyncio.get_running_loop().create_task(self._held_send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _held_send(self) -> None:
        async with self._lock:
            await self._held_broadcast()

    def _held_take(self) -> str | None:
        """The held deltas as one frame (None if there are none); they are no longer held."""
        if not self._held:
            return None
        held, self._held = self._held, {}
        return rendering.deltas_frame(
            self.turn_id,
            (
                (seat, reasoning, offset, "".join(texts))
                for (seat, reasoning), (offset, texts) in held.items()
            ),
        )

    def _marked_take(self) -> str | None:
        """The marked parts of the turn, rendered now, as one frame (None if none are marked)."""
        if not self._marked:
            return None
        marked, self._marked = self._marked, set()
        state = self.state
        fragments = [rendering.progress_html(state)]
        columns = {number for kind, number in marked if kind == "column"}
        for kind, number in sorted(marked):
            if kind == "column":
                fragments.append(rendering.column_html(state, state.seat(number)))
            elif kind == "tools" and number not in columns:
                # Only the tool list: the column itself is not swapped while its text streams in.
                fragments.append(rendering.tools_html(state, state.seat(number)))
        if ("analysis", 0) in marked:
            fragments.append(rendering.analysis_html(state))
        if ("final", 0) in marked:
            fragments.append(rendering.final_html(state))
        return rendering.html_frame(state, fragments)

    def _cancelled_event(self) -> RunFailed:
        return RunFailed(
            reason="cancelled",
            message="Cancelled: what had streamed is kept.",
            partial_final=self.state.final_text,
            totals=self._totals_so_far(),
        )

    def _totals_so_far(self) -> Totals:
        """The figures of a run that stopped early: what finished as reported, what was cut off as
        ``unreported_cost`` says (unknown: a model may have been working and billing; a demo model, 0)."""
        state = self.state
        gateway = gateway_from_settings()
        steps = []
        asked = len(state.prompt) + (state.history_chars or 0)
        for seat in state.seats:
            if seat.kept:
                continue  # counted by the run that produced it
            estimated = False
            if seat.finished:
                cost = seat.cost
            elif seat.buffer.length or seat.reasoning.length:
                # Cut off mid-stream: no usage report came, so the tokens are estimated from what streamed
                # (and shown as estimates), and priced like reported ones.
                usage = usage_estimate(
                    prompt_chars=asked, completion_chars=seat.buffer.length + seat.reasoning.length
                )
                cost = gateway.cost_of(seat.model, usage)
                seat.prompt_tokens, seat.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                seat.cost, seat.usage_estimated, seat.dirty = cost, True, True
                estimated = True
            else:
                cost = unreported_cost(gateway=gateway, model=seat.model, cancelled=True)
            seat_usage = Usage(
                prompt_tokens=seat.prompt_tokens,
                completion_tokens=seat.completion_tokens,
                total_tokens=seat.prompt_tokens + seat.completion_tokens,
                cost=cost,
            )
            steps.append(
                StepStats(
                    role="seat",
                    seat=seat.seat,
                    model=seat.model,
                    status="done" if seat.status == "done" else "cancelled",
                    usage=seat_usage,
                    timings=Timings(ttft_ms=seat.ttft_ms, duration_ms=seat.duration_ms),
                    estimated=estimated,
                )
            )
        answers = sum(seat.buffer.length for seat in state.seats if seat.status == "done")
        if state.judge_step is not None:
            steps.append(state.judge_step)
        elif state.phase == "analysis":  # the judge was cut off: it may have been working, and billing
            # Its reply is not streamed: only what it was sent can be estimated.
            usage = usage_estimate(prompt_chars=asked + answers, completion_chars=0)
            steps.append(
                StepStats(
                    role="judge",
                    model=state.judge,
                    status="cancelled",
                    usage=usage.model_copy(update={"cost": gateway.cost_of(state.judge, usage)}),
                    estimated=True,
                )
            )
        if state.final_started:
            usage = usage_estimate(
                prompt_chars=asked + answers + len(state.analysis_raw), completion_chars=state.final.length
            )
            steps.append(
                StepStats(
                    role="writer",
                    model=state.writer,
                    status="cancelled",
                    usage=usage.model_copy(update={"cost": gateway.cost_of(state.writer, usage)}),
                    estimated=True,
                )
            )
        return totals_build(steps=steps, started=self._started)

    # --- frames ------------------------------------------------------------------------------------------
    # Every broadcast holds ``_lock``. What is held goes out in order: the deltas, then the parts rendered
    # after them (which cover them); a snapshot covers both, and replaces them.

    async def _held_broadcast(self) -> None:
        for frame in self._held_frames():
            await self._broadcast(frame)

    def _held_frames(self) -> list[str]:
        """Everything held, as frames built now (before any wait): the deltas and the marked parts, or the
        snapshot that is due. Nothing is held any more."""
        self._window_close()
        if self._snapshot_due:
            return [self._snapshot_take()]
        if self._marked and self._held:
            self._held_drop_covered()
        return [frame for frame in (self._held_take(), self._marked_take()) if frame is not None]

    def _held_drop_covered(self) -> None:
        """A column or fused answer still streaming, rendered in this frame, carries its raw text so far and
        where it ends: its held deltas would only send the same text twice. A finished one is rendered as
        Markdown, so its deltas still go first: the deltas carry every character."""
        state = self.state
        covered = {n for kind, n in self._marked if kind == "column" and not state.seat(n).finished}
        if ("final", 0) in self._marked and state.final_streaming:
            covered.add(0)
        for key in [key for key in self._held if key[0] in covered]:
            del self._held[key]

    def _snapshot_take(self) -> str:
        """The whole turn, rendered now. It covers the marked parts, which are dropped; and the held deltas
        too, which are dropped only if the pages have not had the turn yet (else they go out first)."""
        self._window_close()
        if self._snapshot_due:
            self._held.clear()
            self._snapshot_due = False
        self._marked.clear()
        return rendering.snapshot_frame(self.state)

    async def _broadcast_snapshot(self) -> None:
        """The held deltas (if the pages have the turn), then the whole turn."""
        held = None if self._snapshot_due else self._held_take()
        snapshot = self._snapshot_take()
        if held is not None:
            await self._broadcast(held)
        await self._broadcast(snapshot)

    async def _broadcast(self, text: str) -> None:
        if self.layer is not None:
            await self.layer.group_send(self.group, {"type": "chat.frame", "text": text})

    async def _snapshot_send(self, reply_channel: str) -> None:
        """The whole turn as it is now, on ``reply_channel``: after the deltas it holds (they reach the asker
        before the snapshot, which covers them, and every other viewer as usual)."""
        assert self.layer is not None
        async with self._lock:
            # What is held goes to every viewer first. Everything is rendered before any wait: deltas
            # arriving meanwhile are held for the next frame, not this one.
            frames = self._held_frames()
            snapshot = rendering.snapshot_frame(self.state)
            for frame in frames:
                await self._broadcast(frame)
            await self.layer.send(
                reply_channel, {"type": "chat.snapshot", "turn": self.turn_id, "text": snapshot}
            )

    async def _subscription(self, queue: asyncio.Queue[Any]) -> AsyncGenerator[FusionEvent, None]:
        ended = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    ended = True
                    return
                if isinstance(item, BaseException):
                    ended = True
                    raise item
                if item.type in _TERMINAL_TYPES:
                    ended = True  # whatever the reader does next, the run is over
                yield item
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)
            if not ended:
                self.cancel()
                task = self.task
                if task is not None and not task.done():
                    # ``asyncio.wait`` never cancels what it waits for: if the reader is cancelled again
                    # meanwhile, the recording still ends on its own.
                    await asyncio.wait([task])

    # --- persistence -------------------------------------------------------------------------------------

    def flush_due(self, now: float, heartbeat_seconds: float) -> bool:
        """Whether the shared flusher should write this run now: it changed, or its heartbeat is due."""
        if self._closed or self.state.status in TERMINAL_STATUSES:
            return False  # the run's own final flush writes the rest
        if now - self.last_write >= heartbeat_seconds:
            return True
        return self.state.dirty or any(seat.dirty for seat in self.state.seats)

    async def _flush(self) -> None:
        """Write what changed now (the final state, mostly); serialised with the shared flusher's writes.

        A failed write is tried again (a connection the database dropped is replaced on the next try) a few
        times; after that the error goes to the caller, with everything still marked unsaved.
        """
        for attempt, pause in enumerate(FINAL_WRITE_RETRIES):
            async with write_lock():
                turn_fields, answers = changes_collect(self.state)
                self.last_write = time.monotonic()
                try:
                    missing = await turns_write([(self.turn_id, turn_fields, answers)])
                except Exception:
                    self.state.unsaved_mark()
                    if attempt == len(FINAL_WRITE_RETRIES) - 1:
                        raise
                    logger.warning("turn %s: a write failed; trying again", self.turn_id, exc_info=True)
                else:
                    break
            await asyncio.sleep(pause)
        if missing and not self._closed:
            # The conversation was deleted under a running turn: nothing left to record into.
            self.cancel()

    async def _flush_or_log(self) -> None:
        """The last writes of a run: if the database stays away, the viewers still see the turn end (a turn
        that seems to run for ever is worse); the stale-turn reaper marks it interrupted later, keeping what
        the last good flush saved."""
        try:
            await self._flush()
        except Exception:
            logger.exception("turn %s: its final state could not be saved", self.turn_id)


def _parts_for(event: FusionEvent) -> tuple[Part, ...]:
    """The parts of the turn an event changes besides the progress line (which every event may change)."""
    if isinstance(event, SeatStarted | SeatDone | SeatFailed):
        return (("column", event.seat),)
    if isinstance(event, SeatToolCall | SeatToolResult):
        return (("tools", event.seat),)
    if isinstance(event, AnalysisStarted | AnalysisDone | AnalysisFailed):
        return (("analysis", 0),)
    if isinstance(event, FinalStarted | FinalDone):
        return (("final", 0),)
    return ()


def usage_estimate(*, prompt_chars: int, completion_chars: int) -> Usage:
    """Tokens of a call cut off before its usage report, from the characters it was sent and streamed:
    about four characters a token, as English text runs with common tokenizers. Shown as an estimate."""
    prompt, completion = tokens_for_chars(prompt_chars), tokens_for_chars(completion_chars)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _source_close(source: AsyncIterator[Any], turn_id: int) -> None:
    """Close the event source (it stops every request still in flight); its own error was handled."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.debug("turn %s: closing the event source failed", turn_id, exc_info=True)


@database_sync_to_async
def _turn_take(*, turn_id: int, recorder_channel: str) -> None:
    Turn.objects.filter(pk=turn_id).update(recorder_channel=recorder_channel, heartbeat_at=timezone.now())
