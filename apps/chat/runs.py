"""Server-owned runs: a chatroom turn's run is its recorder's task, in the process that started it.

The task, not the socket or request that asked for it, owns the run: closing a tab does not stop it. The
recorder keeps the task referenced and, whatever happens to the run, ends the turn (done, failed,
cancelled, or interrupted if the run or the recorder itself raised), never leaving it "running" for ever.
"""

from __future__ import annotations

import asyncio

from apps.chat.models import Turn
from apps.chat.recorder import TurnRecorder, recorder_for
from apps.chat.state import TurnState
from apps.fusion.engine import run_fusion
from apps.fusion.schemas import FusionRequest
from apps.providers.registry import gateway_from_settings
from apps.webtools.toolbox import toolbox_from_settings


async def run_launch(
    *,
    turn: Turn,
    request: FusionRequest,
    channel_layer_alias: str = "default",
    state: TurnState | None = None,
) -> None:
    """Start ``turn``'s run on the current event loop and return once its recorder listens. ``state``: the
    turn's state to start from (a retry of failed seats, its kept seats done); else a fresh one."""
    recorder = TurnRecorder(turn=turn, channel_layer_alias=channel_layer_alias, state=state)
    recorder.state.history_chars = sum(len(prior.prompt) + len(prior.answer) for prior in request.history)
    events = run_fusion(request, gateway=gateway_from_settings(), toolbox=toolbox_from_settings())
    await recorder.start(events)


def run_cancel_local(*, turn_id: int) -> bool:
    """Cancel the run of ``turn_id`` if this process records it; False when it runs elsewhere (or nowhere)."""
    recorder = recorder_for(turn_id)
    if recorder is None:
        return False
    recorder.cancel()
    return True


def run_task(turn_id: int) -> asyncio.Task[None] | None:
    """The task running ``turn_id`` here, if any (tests and the benchmark wait on it)."""
    recorder = recorder_for(turn_id)
    return None if recorder is None else recorder.task
