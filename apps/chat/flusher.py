"""The shared flusher: one task per event loop writes every live run's changes in one transaction per tick,
so a few hundred runs cost a few writes a second, not a few hundred.

A run joins with ``flusher_join`` while it records and leaves with ``flusher_leave``; the flusher asks each
run whether a write is due (``Flushable.flush_due``) and writes what changed (``changes_collect``). Under
load it backs off (four times the last write's time), capped: a write starts at most ``BACKOFF_LIMIT``
intervals after the previous one started, which bounds what a crash loses (``loss_bound_seconds``). A run's
own last writes (its final state) go through ``write_lock`` too, so they never interleave with a tick.

A tick is written as a few batched statements (``_turns_write_batched``): one query for the turns that are
gone, one ``executemany`` UPDATE per set of turn fields and one for all the answers. One ORM ``update()`` per
turn and per answer cost hundreds of queries' Python overhead a tick (10-17% of the server's CPU at 200
runs); the values are still converted by the fields themselves, so they are stored exactly as the ORM would.
The speed measure ``flush_batch`` (``apps.core.speed``) switched off brings back the per-row ORM updates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from apps.chat.models import PanelAnswer, Turn
from apps.chat.state import TERMINAL_STATUSES, TurnState
from apps.core.speed import measure_on
from apps.providers.base import json_storable

logger = logging.getLogger(__name__)

# Pauses between tries of a run's own write (its final state): a dropped database connection is replaced on
# the next try, and a database that stays away for longer loses the write (the turn is then reaped as
# interrupted, keeping what the last good flush saved).
FINAL_WRITE_RETRIES = (0.2, 1.0, 0.0)
# However slow the writes get, a flush starts at most this many flush intervals after the previous one
# started (unless that write alone took longer): the bound on what a process that dies can lose.
BACKOFF_LIMIT = 4

# A turn's changed fields and its changed answers (by seat), as written in one go.
Changes = tuple[dict[str, Any], dict[int, dict[str, Any]]]


class Flushable(Protocol):
    """A live run as the flusher sees it (``recorder.TurnRecorder``)."""

    turn_id: int
    state: TurnState
    # ``time.monotonic()`` of the last write that included this run.
    last_write: float

    def flush_due(self, now: float, heartbeat_seconds: float) -> bool: ...

    def cancel(self) -> None: ...


_runs: dict[asyncio.AbstractEventLoop, dict[int, Flushable]] = {}
_flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_write_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def loss_bound_seconds() -> float:
    """Text viewers saw more than this long before the process running a turn died is in the database, plus
    the time of the write that saves it (milliseconds on a healthy database; a write slower than
    ``BACKOFF_LIMIT - 1`` intervals widens the window by its own length): 4 x ``CHAT_FLUSH_SECONDS``, 1 s."""
    return BACKOFF_LIMIT * float(getattr(settings, "CHAT_FLUSH_SECONDS", 0.25))


def write_lock() -> asyncio.Lock:
    """Held by every write of this loop's runs: a run's own write and the flusher's never overlap."""
    loop = asyncio.get_running_loop()
    lock = _write_locks.get(loop)
    if lock is None:
        lock = _write_locks[loop] = asyncio.Lock()
    return lock


def flusher_join(run: Flushable) -> None:
    """Have ``run`` written every tick from now on (starting this loop's flusher if need be)."""
    loop = asyncio.get_running_loop()
    _runs.setdefault(loop, {})[run.turn_id] = run
    task = _flushers.get(loop)
    if task is None or task.done():
        _flushers[loop] = loop.create_task(_flush_all(loop), name="chat-flusher")


def flusher_leave(run: Flushable) -> None:
    for runs in _runs.values():
        if runs.get(run.turn_id) is run:
            del runs[run.turn_id]


async def _flush_all(loop: asyncio.AbstractEventLoop) -> None:
    interval = float(getattr(settings, "CHAT_FLUSH_SECONDS", 0.25))
    heartbeat = float(getattr(settings, "CHAT_HEARTBEAT_SECONDS", 5.0))
    bound = loss_bound_seconds()
    pause = interval
    try:
        while True:
            await asyncio.sleep(pause)
            pause = interval
            live = list(_runs.get(loop, {}).values())
            if not live:
                return  # the next run to join starts a new flusher
            due: list[Flushable] = []
            try:
                async with write_lock():
                    now = time.monotonic()
                    due = [run for run in live if run.flush_due(now, heartbeat)]
                    if not due:
                        continue
                    batch = [(run.turn_id, *changes_collect(run.state)) for run in due]
                    for run in due:
                        run.last_write = now
                    missing = await turns_write(batch)
                    elapsed = time.monotonic() - now
                    # Under load, write less often rather than let flushes crowd out the runs themselves,
                    # but never so seldom that a crash loses more than ``bound``: the next write starts at
                    # most ``bound`` after this one started (one interval after it ended, if it was slower).
                    pause = max(interval, min(elapsed * 4, bound - elapsed))
            except Exception:  # the runs go on; what the write held is written again on the next tick
                logger.exception("flushing %d running turns failed", len(live))
                for run in due:
                    run.state.unsaved_mark()
                continue
            for run in due:
                if run.turn_id in missing:
                    run.cancel()
    finally:
        if _flushers.get(loop) is asyncio.current_task():
            del _flushers[loop]


def changes_collect(state: TurnState) -> Changes:
    """What to write of ``state``, copied now (the write runs in a thread while events keep coming); the
    changes are then taken as written (``TurnState.unsaved_mark`` puts them back after a failed write)."""
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
                "usage_estimated": seat.usage_estimated,
                "ttft_ms": seat.ttft_ms,
                "duration_ms": seat.duration_ms,
                "reasoning": seat.reasoning.text,
                # Model arguments and search results: untrusted text stored as JSON.
                "tool_calls": json_storable(seat.tools),
                "sources": json_storable(seat.sources),
            }
    return fields, answers


@database_sync_to_async
def turns_write(batch: list[tuple[int, dict[str, Any], dict[int, dict[str, Any]]]]) -> set[int]:
    """Write each turn's changed fields and answers in one transaction; return the turns that are gone (their
    answers are not written)."""
    if measure_on("flush_batch"):
        return _turns_write_batched(batch)
    return _turns_write_orm(batch)


def _turns_write_orm(batch: list[tuple[int, dict[str, Any], dict[int, dict[str, Any]]]]) -> set[int]:
    """One ORM update per turn and per answer: the reference the batched write is measured against."""
    missing: set[int] = set()
    with transaction.atomic():
        for turn_id, fields, answers in batch:
            if not Turn.objects.filter(pk=turn_id).update(**fields):
                missing.add(turn_id)
                continue
            for seat, values in answers.items():
                PanelAnswer.objects.filter(turn_id=turn_id, seat=seat).update(**values)
    return missing


def _turns_write_batched(batch: list[tuple[int, dict[str, Any], dict[int, dict[str, Any]]]]) -> set[int]:
    """The same writes as a few statements: the gone turns found by one query, then one ``executemany``
    per statement shape (a set of turn fields; the answers)."""
    ids = [turn_id for turn_id, _fields, _answers in batch]
    # Rows by statement; a turn deleted after the check below is simply not updated (as by the ORM's
    # update), and is reported gone on the next tick.
    rows: dict[str, list[list[Any]]] = {}
    with transaction.atomic():
        present = set(Turn.objects.filter(pk__in=ids).order_by().values_list("pk", flat=True))
        for turn_id, fields, answers in batch:
            if turn_id not in present:
                continue
            sql, columns = _update_statement(Turn, tuple(fields), ("id",))
            rows.setdefault(sql, []).append(_db_values(columns, fields.values(), turn_id))
            for seat, values in answers.items():
                sql, columns = _update_statement(PanelAnswer, tuple(values), ("turn", "seat"))
                rows.setdefault(sql, []).append(_db_values(columns, values.values(), turn_id, seat))
        with connection.cursor() as cursor:
            for sql, params in rows.items():
                cursor.executemany(sql, params)
    return set(ids) - present


@lru_cache(maxsize=64)
def _update_statement(
    model: type[models.Model], names: tuple[str, ...], keys: tuple[str, ...]
) -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    """``UPDATE <table> SET <names> WHERE <keys>`` with ``%s`` placeholders, and the fields of ``names``."""
    meta = model._meta
    fields = []
    for name in (*names, *keys):
        field = meta.get_field(name)
        assert isinstance(field, models.Field)
        fields.append(field)
    assigned = ", ".join(f'"{field.column}" = %s' for field in fields[: len(names)])
    matched = " AND ".join(f'"{field.column}" = %s' for field in fields[len(names) :])
    # Only the models' own table and column names go into the text; every value is a parameter.
    sql = f'UPDATE "{meta.db_table}" SET {assigned} WHERE {matched}'  # noqa: S608
    return sql, tuple(fields[: len(names)])


def _db_values(fields: tuple[models.Field[Any, Any], ...], values: Any, *keys: int) -> list[Any]:
    """``values`` as the database takes them, converted by each field as the ORM's update does (JSON,
    time zones), then the key values."""
    prepared = (
        field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)
    )
    return [*prepared, *keys]
