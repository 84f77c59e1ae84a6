"""The run recorder: persists a turn's events in small batches and broadcasts each one at once.

A ``TurnRecorder`` sits between ``run_fusion`` (or any source of ``FusionEvent``) and whoever drives the
run (the chatroom's run task, or the API streaming to its caller)::

    async for event in TurnRecorder(turn=turn).record(run_fusion(request, gateway=gateway)):
        ...  # every event passes through unchanged

While recording it

- keeps the turn's live state in memory; one flusher per process writes what changed in every live run
  every ``CHAT_FLUSH_SECONDS`` (one transaction for all of them; under load it backs off, to at most every
  ``BACKOFF_LIMIT`` intervals, which bounds what a crash loses: ``loss_bound_seconds``), refreshing
  ``Turn.heartbeat_at`` at least every ``CHAT_HEARTBEAT_SECONDS``; the terminal state is flushed *before*
  the last event is broadcast or yielded, so whoever sees a turn end finds it in the database;
- sends one JSON frame per event to the channel-layer group ``conversation.<id>``: text deltas as
  ``{type: "delta", turn, seat|final, offset, text}``, everything else as server-rendered HTML fragments;
  deltas already waiting when the recorder gets to them are merged per column, and the frames of all the
  columns that moved travel as one channel-layer message (``chat.frames``);
- listens on its own channel (saved in ``Turn.worker``) for ``run.snapshot`` (reply with the whole turn as it
  is now, on the asker's channel) and ``run.cancel``. Broadcasts and snapshot replies are serialised by one
  lock, so a snapshot and the deltas after it reach a consumer in order: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.chat import rendering
from apps.chat.models import PanelAnswer, Turn
from apps.chat.state import TERMINAL_STATUSES, TurnState, turn_state_initial
from apps.fusion import schemas as ev
from apps.fusion.engine import totals_build
from apps.providers.base import Usage, json_storable
from apps.providers.registry import gateway_from_settings

logger = logging.getLogger(__name__)

# Recorders alive in this process, by turn id: cancelling a local run needs no channel layer round trip.
_LIVE: dict[int, TurnRecorder] = {}


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def recorder_for(turn_id: int) -> TurnRecorder | None:
    return _LIVE.get(turn_id)


@dataclass
class _Failure:
    error: BaseException


_END = object()
_CANCELLED = object()


class TurnRecorder:
    """Persist and broadcast one turn's run; see the module docstring for the guarantees."""

    def __init__(self, *, turn: Turn, channel_layer_alias: str = "default") -> None:
        self.turn_id: int = turn.pk
        self.conversation_id: int = turn.conversation_id
        self.group = conversation_group(turn.conversation_id)
        self.state: TurnState = turn_state_initial(turn)
        self.channel_layer_alias = channel_layer_alias
        self.layer: BaseChannelLayer | None = None
        self.channel = ""
        self._lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._cancel_requested = False
        self._pump: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.perf_counter()
        self._last_write = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the turn: listen on a fresh channel, save it as the turn's worker, show the turn to all."""
        if self._opened:
            return
        self._opened = True
        self.loop = asyncio.get_running_loop()
        self.layer = get_channel_layer(self.channel_layer_alias)
        if self.layer is not None:
            self.channel = await self.layer.new_channel()
        _LIVE[self.turn_id] = self
        await _turn_take(turn_id=self.turn_id, worker=self.channel)
        self._last_write = time.monotonic()
        if self.layer is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name=f"turn-{self.turn_id}-listen"))
        _flusher_ensure()
        async with self._lock:
            await self._broadcast(rendering.snapshot_frame(self.state))

    async def record(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass every event of ``events`` through unchanged while persisting and broadcasting it.

        If the run is cancelled (``cancel()``, a ``run.cancel`` message), the source is closed (which stops
        every request in flight) and a ``RunFailed(reason="cancelled")`` is yielded last. If the source
        raises, a ``RunFailed(reason="unexpected_error")`` is yielded and the turn is marked interrupted.
        """
        await self.open()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pump = asyncio.create_task(self._pump_events(events, queue), name=f"turn-{self.turn_id}-run")
        try:
            finished = False
            while not finished:
                # Take everything already waiting: under load, the deltas among it go out as fewer frames.
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                deltas: list[Any] = []
                for item in items:
                    if getattr(item, "type", None) in ("seat.delta", "final.delta", "seat.reasoning"):
                        deltas.append(item)
                        continue
                    if deltas:
                        await self._apply_deltas(deltas)
                        for delta in deltas:
                            yield delta
                        deltas = []
                    if item is _END:
                        finished = True
                        break
                    if item is _CANCELLED:
                        event: Any = self._cancelled_event()
                        status = None
                    elif isinstance(item, _Failure):
                        logger.error("turn %s: the run raised", self.turn_id, exc_info=item.error)
                        event = ev.RunFailed(
                            reason="unexpected_error",
                            message=f"The run stopped unexpectedly ({type(item.error).__name__}).",
                            partial_final=self.state.final_text,
                            totals=self._totals_so_far(),
                        )
                        status = "interrupted"
                    else:
                        event, status = item, None
                    await self._apply(event, status=status)
                    yield event
                    if event.type in ("run.done", "run.failed"):
                        finished = True
                        break
                if deltas and not finished:
                    await self._apply_deltas(deltas)
                    for delta in deltas:
                        yield delta
        finally:
            await self.close()

    def cancel(self) -> None:
        """Stop the run: the source is closed, what streamed is kept, the turn ends as cancelled."""
        if self._cancel_requested or self._closed:
            return
        self._cancel_requested = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    async def close(self, *, message: str = "The run stopped before it finished.") -> None:
        """Finish: a turn not yet ended is marked interrupted, the last state is flushed, listening stops."""
        if self._closed:
            return
        self._closed = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        try:
            if self.state.status not in TERMINAL_STATUSES:
                self.state.finish(status="interrupted", reason="interrupted", message=message)
                await self._flush_or_log()
                async with self._lock:
                    await self._broadcast(rendering.snapshot_frame(self.state))
            else:
                await self._flush_or_log()
        finally:
            _LIVE.pop(self.turn_id, None)
            await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        listener = self._tasks[0] if self.layer is not None and self._tasks else None
        if listener is not None and self.layer is not None:
            # A blocked Redis receive only notices a cancel when its BRPOP times out (seconds): a message
            # on our own channel ends the listener at once.
            try:
                await self.layer.send(self.channel, {"type": "run.stop"})
                await asyncio.wait([listener], timeout=1.0)
            except Exception:  # the cancel below still ends it
                logger.debug("turn %s: could not stop the listener by message", self.turn_id, exc_info=True)
        for task in self._tasks:
            task.cancel()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=0.1)

    # --- events ------------------------------------------------------------------------------------------

    async def _pump_events(self, events: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except asyncio.CancelledError:
            queue.put_nowait(_CANCELLED if self._cancel_requested else _END)
            return
        except Exception as exc:
            queue.put_nowait(_Failure(exc))
            return
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # the source is done with either way; its own error was handled above
                    logger.debug("turn %s: closing the event source failed", self.turn_id, exc_info=True)
        queue.put_nowait(_END)

    async def _apply_deltas(self, events: list[Any]) -> None:
        """Append text and reasoning deltas; consecutive ones for the same column go out as one frame."""
        state = self.state
        # (seat number, 0 for the fused answer; reasoning?) -> offset, texts
        merged: dict[tuple[int, bool], tuple[int, list[str]]] = {}
        async with self._lock:
            for event in events:
                if event.type == "seat.delta":
                    seat = state.seat(event.seat)
                    offset = seat.buffer.append(event.text)
                    seat.dirty = True
                    key = (event.seat, False)
                elif event.type == "seat.reasoning":
                    # Reasoning comes without offsets: the recorder's own count is what the page checks.
                    seat = state.seat(event.seat)
                    offset = seat.reasoning.append(event.text)
                    seat.dirty = True
                    key = (event.seat, True)
                else:
                    offset = state.final.append(event.text)
                    state.dirty = True
                    key = (0, False)
                if key in merged:
                    merged[key][1].append(event.text)
                else:
                    merged[key] = (offset, [event.text])
            frames = []
            for (number, reasoning), (offset, texts) in merged.items():
                text = "".join(texts)
                if number:
                    frame = rendering.seat_delta_frame(
                        turn_id=self.turn_id, seat=number, offset=offset, text=text, reasoning=reasoning
                    )
                else:
                    frame = rendering.final_delta_frame(turn_id=self.turn_id, offset=offset, text=text)
                frames.append(frame)
            # One channel-layer message for every column that moved: the socket still gets one frame each.
            await self._broadcast_many(frames)

    async def _apply(self, event: Any, *, status: str | None = None) -> None:
        state = self.state
        async with self._lock:
            state.apply(event)
            if status is not None:
                state.status = status
            if state.status in TERMINAL_STATUSES:
                # The database first: whoever sees the turn end must find it saved. If it cannot be saved,
                # the viewers still see it end rather than a turn that seems to run for ever.
                await self._flush_or_log()
                frame = rendering.snapshot_frame(state)
            else:
                frame = rendering.html_frame(state, self._fragments_for(event))
            await self._broadcast(frame)

    def _fragments_for(self, event: Any) -> list[str]:
        state = self.state
        fragments = [rendering.progress_html(state)]
        if isinstance(event, ev.SeatStarted | ev.SeatDone | ev.SeatFailed):
            fragments.append(rendering.column_html(state, state.seat(event.seat)))
        elif isinstance(event, ev.SeatToolCall | ev.SeatToolResult):
            # Only the tool list: re-rendering the column would race the text streaming into it.
            fragments.append(rendering.tools_html(state, state.seat(event.seat)))
        elif isinstance(event, ev.AnalysisStarted | ev.AnalysisDone | ev.AnalysisFailed):
            fragments.append(rendering.analysis_html(state))
        elif isinstance(event, ev.FinalStarted | ev.FinalDone):
            fragments.append(rendering.final_html(state))
        return fragments

    def _cancelled_event(self) -> ev.RunFailed:
        return ev.RunFailed(
            reason="cancelled",
            message="Cancelled: what had streamed is kept.",
            partial_final=self.state.final_text,
            totals=self._totals_so_far(),
        )

    def _totals_so_far(self) -> ev.Totals:
        """The figures of a run that stopped early: what finished as reported, what was cut off as unknown
        (a model may have been working and billing), except for the demo models, which cost nothing."""
        state = self.state
        steps = []
        for seat in state.seats:
            cost = seat.cost if seat.finished else (0.0 if seat.is_demo else None)
            seat_usage = Usage(
                prompt_tokens=seat.prompt_tokens,
                completion_tokens=seat.completion_tokens,
                total_tokens=seat.prompt_tokens + seat.completion_tokens,
                cost=cost,
            )
            steps.append(
                ev.StepStats(
                    role="seat",
                    seat=seat.seat,
                    model=seat.model,
                    status="done" if seat.status == "done" else "cancelled",
                    usage=seat_usage,
                    timings=ev.Timings(ttft_ms=seat.ttft_ms, duration_ms=seat.duration_ms),
                )
            )
        is_demo = gateway_from_settings().is_demo
        if state.judge_step is not None:
            steps.append(state.judge_step)
        elif state.phase == "analysis":  # the judge was cut off: it may have been working, and billing
            cost = 0.0 if is_demo(state.judge) else None
            steps.append(
                ev.StepStats(role="judge", model=state.judge, status="cancelled", usage=Usage(cost=cost))
            )
        if state.final_started:
            cost = 0.0 if is_demo(state.writer) else None
            steps.append(
                ev.StepStats(role="writer", model=state.writer, status="cancelled", usage=Usage(cost=cost))
            )
        return totals_build(steps=steps, started=self._started)

    async def _broadcast(self, text: str) -> None:
        if self.layer is not None:
            await self.layer.group_send(self.group, {"type": "chat.frame", "text": text})

    async def _broadcast_many(self, texts: list[str]) -> None:
        if len(texts) == 1:
            await self._broadcast(texts[0])
        elif texts and self.layer is not None:
            await self.layer.group_send(self.group, {"type": "chat.frames", "texts": texts})

    # --- snapshot and cancel requests ------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self.layer is not None
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == "run.snapshot":
                reply = message.get("reply_channel")
                if isinstance(reply, str) and reply:
                    async with self._lock:
                        await self.layer.send(
                            reply,
                            {
                                "type": "chat.snapshot",
                                "turn": self.turn_id,
                                "text": rendering.snapshot_frame(self.state),
                            },
                        )
            elif kind == "run.cancel":
                self.cancel()
            elif kind == "run.stop":
                return

    # --- persistence -------------------------------------------------------------------------------------

    def flush_due(self, now: float, heartbeat_seconds: float) -> bool:
        """Whether the shared flusher should write this run now: it changed, or its heartbeat is due."""
        if self._closed or self.state.status in TERMINAL_STATUSES:
            return False  # the run's own final flush writes the rest
        if now - self._last_write >= heartbeat_seconds:
            return True
        return self.state.dirty or any(seat.dirty for seat in self.state.seats)

    async def _flush(self) -> None:
        """Write what changed now (the final state, mostly); serialised with the shared flusher's writes.

        A failed write is tried again (a connection the database dropped is replaced on the next try) a few
        times; after that the error goes to the caller, with everything still marked unsaved.
        """
        for attempt, pause in enumerate(FINAL_WRITE_RETRIES):
            async with _write_lock():
                turn_fields, answers = self._collect()
                self._last_write = time.monotonic()
                try:
                    missing = await _turns_write([(self.turn_id, turn_fields, answers)])
                except Exception:
                    self.unsaved_mark()
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

    def unsaved_mark(self) -> None:
        """After a failed write: everything is written again next time (what it held is not known saved)."""
        self.state.dirty = True
        for seat in self.state.seats:
            seat.dirty = True

    def _collect(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """What to write, copied now (the write runs in a thread while events keep coming)."""
        state = self.state
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        if state.dirty:
            state.dirty = False
            fields.update(
                status=state.status,
                phase=state.phase,
                analysis=state.analysis,
                analysis_raw=state.analysis_raw,
                analysis_error=state.analysis_error,
                analysis_error_detail=state.analysis_error_detail,
                final_text=state.final_text,
                failure_reason=state.failure_reason,
                error_message=state.error_message,
                totals=state.totals,
                cost=state.cost,
            )
            if state.status in TERMINAL_STATUSES:
                fields["finished_at"] = timezone.now()
        answers: dict[int, dict[str, Any]] = {}
        for seat in state.seats:
            if seat.dirty:
                seat.dirty = False
                answers[seat.seat] = {
                    "content": seat.text,
                    "status": seat.status,
                    "error": seat.error,
                    "status_code": seat.status_code,
                    "prompt_tokens": seat.prompt_tokens,
                    "completion_tokens": seat.completion_tokens,
                    "cost": seat.cost,
                    "ttft_ms": seat.ttft_ms,
                    "duration_ms": seat.duration_ms,
                    "reasoning": seat.reasoning.text,
                    # Model arguments and search results: untrusted text stored as JSON.
                    "tool_calls": json_storable(seat.tools),
                    "sources": json_storable(seat.sources),
                }
        return fields, answers


# --- the shared flusher ---------------------------------------------------------------------------------
# One task per event loop writes every live run's changes in one transaction per tick: a few hundred runs
# cost a few writes a second, not a few hundred.

_flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_write_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
# Pauses between tries of a run's own write (its final state): a dropped database connection is replaced on
# the next try, and a database that stays away for longer loses the write (the turn is then reaped as
# interrupted, keeping what the last good flush saved).
FINAL_WRITE_RETRIES = (0.2, 1.0, 0.0)
# However slow the writes get, a flush starts at most this many flush intervals after the previous one
# started (unless that write alone took longer): the bound on what a process that dies can lose.
BACKOFF_LIMIT = 4


def loss_bound_seconds() -> float:
    """Text viewers saw more than this long before the process running a turn died is in the database, plus
    the time of the write that saves it (milliseconds on a healthy database; a write slower than
    ``BACKOFF_LIMIT - 1`` intervals widens the window by its own length): 4 x ``CHAT_FLUSH_SECONDS``, 1 s."""
    return BACKOFF_LIMIT * float(getattr(settings, "CHAT_FLUSH_SECONDS", 0.25))


def _write_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _write_locks.get(loop)
    if lock is None:
        lock = _write_locks[loop] = asyncio.Lock()
    return lock


def _flusher_ensure() -> None:
    loop = asyncio.get_running_loop()
    task = _flushers.get(loop)
    if task is None or task.done():
        _flushers[loop] = loop.create_task(_flush_all(loop), name="chat-flusher")


async def _flush_all(loop: asyncio.AbstractEventLoop) -> None:
    interval = float(getattr(settings, "CHAT_FLUSH_SECONDS", 0.25))
    heartbeat = float(getattr(settings, "CHAT_HEARTBEAT_SECONDS", 5.0))
    bound = loss_bound_seconds()
    pause = interval
    try:
        while True:
            await asyncio.sleep(pause)
            pause = interval
            live = [r for r in _LIVE.values() if r.loop is loop]
            if not live:
                return  # the next recorder to open starts a new flusher
            try:
                async with _write_lock():
                    now = time.monotonic()
                    due = [r for r in live if r.flush_due(now, heartbeat)]
                    if not due:
                        continue
                    batch = [(r.turn_id, *r._collect()) for r in due]
                    for recorder in due:
                        recorder._last_write = now
                    missing = await _turns_write(batch)
                    elapsed = time.monotonic() - now
                    # Under load, write less often rather than let flushes crowd out the runs themselves,
                    # but never so seldom that a crash loses more than ``bound``: the next write starts at
                    # most ``bound`` after this one started (one interval after it ended, if it was slower).
                    pause = max(interval, min(elapsed * 4, bound - elapsed))
            except Exception:  # the runs go on; what the write held is written again on the next tick
                logger.exception("flushing %d running turns failed", len(live))
                for recorder in due:
                    recorder.unsaved_mark()
                continue
            for recorder in due:
                if recorder.turn_id in missing:
                    recorder.cancel()
    finally:
        if _flushers.get(loop) is asyncio.current_task():
            del _flushers[loop]


@database_sync_to_async
def _turn_take(*, turn_id: int, worker: str) -> None:
    Turn.objects.filter(pk=turn_id).update(worker=worker, heartbeat_at=timezone.now())


@database_sync_to_async
def _turns_write(batch: list[tuple[int, dict[str, Any], dict[int, dict[str, Any]]]]) -> set[int]:
    """Write each turn's changed fields and answers in one transaction; return the turns that are gone."""
    missing: set[int] = set()
    with transaction.atomic():
        for turn_id, fields, answers in batch:
            if not Turn.objects.filter(pk=turn_id).update(**fields):
                missing.add(turn_id)
                continue
            for seat, values in answers.items():
                PanelAnswer.objects.filter(turn_id=turn_id, seat=seat).update(**values)
    return missing
