"""Server-owned runs: one asyncio task per running turn, in the process that started it.

The task, not the socket or request that asked for it, owns the run: closing a tab does not stop it. This
module keeps the tasks referenced (a task nobody references can be garbage collected mid-run) and makes sure
a run that dies of an unexpected exception leaves its turn marked interrupted, never "running" for ever.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from apps.chat.models import Turn
from apps.chat.recorder import TurnRecorder, recorder_for
from apps.fusion.schemas import FusionRequest

logger = logging.getLogger(__name__)

_TASKS: dict[int, asyncio.Task[None]] = {}


async def run_launch(*, turn: Turn, request: FusionRequest, channel_layer_alias: str = "default") -> None:
    """Start ``turn``'s run on the current event loop and return once its recorder listens."""
    recorder = TurnRecorder(turn=turn, channel_layer_alias=channel_layer_alias)
    recorder.state.history_chars = sum(len(prior.prompt) + len(prior.answer) for prior in request.history)
    await recorder.open()
    task = asyncio.create_task(_run(recorder, request), name=f"turn-{turn.pk}")
    _TASKS[turn.pk] = task
    task.add_done_callback(lambda _: _TASKS.pop(turn.pk, None))


def run_cancel_local(*, turn_id: int) -> bool:
    """Cancel the run of ``turn_id`` if this process records it; False when it runs elsewhere (or nowhere)."""
    recorder = recorder_for(turn_id)
    if recorder is None:
        return False
    recorder.cancel()
    return True


def run_task(turn_id: int) -> asyncio.Task[None] | None:
    """The task running ``turn_id`` here, if any (tests and the benchmark wait on it)."""
    return _TASKS.get(turn_id)


async def _run(recorder: TurnRecorder, request: FusionRequest) -> None:
    from apps.fusion.engine import run_fusion
    from apps.providers.registry import gateway_from_settings
    from apps.webtools.toolbox import toolbox_from_settings

    try:
        gateway = gateway_from_settings()
        events = run_fusion(request, gateway=gateway, toolbox=toolbox_from_settings())
        async for _event in recorder.record(events):
            pass
    except asyncio.CancelledError:
        # The server is shutting down: close() marks the turn interrupted, keeping what was flushed.
        await recorder.close(message="The server stopped while this turn was running.")
        raise
    except Exception as exc:
        logger.exception("turn %s: the run task failed", recorder.turn_id)
        await recorder.close(message=f"The run stopped unexpectedly ({type(exc).__name__}).")
        await database_sync_to_async(_mark_interrupted)(recorder.turn_id, type(exc).__name__)


def _mark_interrupted(turn_id: int, error: str) -> None:
    from apps.chat.services import turn_mark_interrupted

    turn_mark_interrupted(turn_id=turn_id, message=f"The run stopped unexpectedly ({error}).")
