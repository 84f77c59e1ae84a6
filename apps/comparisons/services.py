"""Blind comparisons: the "compare with a single model" option, the baseline's run and the owner's vote.

Contract used by ``apps.chat`` (keep these signatures): ``baseline_enabled_for(user=, panel_id=)``, read
in the same trip to the database thread that creates the turn, and ``await comparison_start(user=, turn=,
request=, choice=)`` right after the turn's run was launched. It starts the baseline, when the user turned
the option on for the turn's panel (``choice`` is not None), as a task of this server process beside the
turn's run, and returns at once.

The baseline is one model asked the panel's own question (``apps.fusion.prompts.panel_messages``: the same
prompt and the same history the seats get) through the providers gateway, with no system prompt and no tools.
It runs outside the engine, so the judge and the writer never see it. Its text, usage and cost are kept on the
``Comparison`` row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.comparisons.models import BaselineChoice, Comparison
from apps.fusion.calls import CallProgress, call_collect, usage_priced
from apps.fusion.prompts import panel_messages
from apps.fusion.schemas import FusionRequest
from apps.panels.models import Panel
from apps.panels.runnability import catalog, model_route
from apps.providers.base import CompletionRequest, ProviderError, text_storable
from apps.providers.registry import gateway_from_settings

logger = logging.getLogger(__name__)

# The turn statuses after which a fused answer exists to compare with; any other end makes the baseline moot.
_TURN_ENDED_WITHOUT_ANSWER = ("failed", "cancelled", "interrupted")
# Baseline tasks of this process, referenced until they end (the event loop keeps only weak references).
_TASKS: set[asyncio.Task[None]] = set()


class ComparisonError(ValueError):
    """A choice or vote refused, with a message fit to show to the person who made it."""


def _heartbeat_seconds() -> float:
    return float(getattr(settings, "CHAT_HEARTBEAT_SECONDS", 5.0))


def _stale_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "CHAT_STALE_AFTER_SECONDS", 30.0)))


# --- the option ----------------------------------------------------------------------------------------


def baseline_choice_for(*, user: Any, panel: Panel) -> BaselineChoice:
    """The user's option for ``panel``: the saved one, else an unsaved one that is off (writer by default)."""
    found = BaselineChoice.objects.filter(user_id=user.pk, panel=panel).first()
    return found or BaselineChoice(user_id=user.pk, panel=panel, enabled=False, model_id="")


def baseline_model_options(*, panel: Panel) -> list[tuple[str, str]]:
    """The single models the option offers for ``panel``, as (model id, label): the panel's writer first
    (id ``""``: whatever the writer is when a turn starts), the panel's other models, then every catalog
    model that can run here (demo and endpoint models always, OpenRouter's with a key)."""
    writer = panel.writer_model
    options = [("", f"{writer} (the panel's writer)")]
    seen = {writer}
    own = [panel.judge_model, *(member.model_id for member in panel.members.all())]
    with_key = bool(settings.OPENROUTER_API_KEY)
    runnable = [info.id for info in catalog().models if with_key or model_route(info.id) != "openrouter"]
    for model in [*own, *runnable]:
        if model and model not in seen:
            seen.add(model)
            options.append((model, model))
    return options


def baseline_choice_save(*, user: Any, panel: Panel, enabled: bool, model_id: str) -> BaselineChoice:
    """Save the option for one of the panels the user may run (the caller has checked that).

    ``model_id`` empty (or the panel's writer) means "the writer"; any other must be one of
    ``baseline_model_options`` (``ComparisonError`` otherwise).
    """
    model_id = model_id.strip()
    if model_id == panel.writer_model:
        model_id = ""
    if model_id and model_id not in {value for value, _label in baseline_model_options(panel=panel)}:
        raise ComparisonError(f"The model {model_id[:200]!r} cannot run here: pick one from the list.")
    choice, _created = BaselineChoice.objects.update_or_create(
        user_id=user.pk, panel=panel, defaults={"enabled": enabled, "model_id": model_id}
    )
    return choice


# --- the baseline's run --------------------------------------------------------------------------------


def baseline_enabled_for(*, user: Any, panel_id: int | None) -> BaselineChoice | None:
    """The user's option for a panel when it is on (else None): what a new turn of that panel needs."""
    if panel_id is None:
        return None
    return BaselineChoice.objects.filter(user_id=user.pk, panel_id=panel_id, enabled=True).first()


def comparison_create(*, user: Any, turn: Any, choice: BaselineChoice | None) -> Comparison | None:
    """The comparison of a new turn when its user has the option on for its panel (``choice``, from
    ``baseline_enabled_for``; else None), its order drawn now: A is the single model's answer or the fused
    one, at random, and stays so."""
    if choice is None or turn.panel_id is None:
        return None
    snapshot = turn.panel_snapshot or {}
    return Comparison.objects.create(
        owner_id=user.pk,
        turn=turn,
        panel_id=turn.panel_id,
        panel_name=str(snapshot.get("name") or "")[:80],
        model_id=choice.model_id or str(snapshot.get("writer") or ""),
        baseline_is_a=secrets.randbelow(2) == 0,
        heartbeat_at=timezone.now(),
    )


async def comparison_start(
    *, user: Any, turn: Any, request: FusionRequest, choice: BaselineChoice | None
) -> Comparison | None:
    """Start the baseline of a chatroom turn whose user turned the option on for its panel; None otherwise.

    ``turn`` is the ``apps.chat`` turn just created, ``request`` the engine request its run got (its prompt,
    history and options are the baseline's too), ``choice`` what ``baseline_enabled_for`` read for its panel
    (None, the usual case, costs no trip to the database thread, where a burst of prompts queues). Returns
    once the comparison is saved and its task started.
    """
    if choice is None:
        return None
    try:
        comparison = await database_sync_to_async(comparison_create)(user=user, turn=turn, choice=choice)
    except Exception:
        # The turn is already running: a comparison that cannot start must not make its start look failed.
        logger.exception("turn %s: the single-model comparison could not start", turn.pk)
        return None
    if comparison is None:
        return None
    task = asyncio.get_running_loop().create_task(
        baseline_run(comparison_id=comparison.pk, request=request, model=comparison.model_id),
        name=f"turn-{turn.pk}-baseline",
    )
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return comparison


def baseline_request(*, request: FusionRequest, model: str) -> CompletionRequest:
    """What the single model is asked: what a panel seat without a system prompt of its own is asked."""
    return CompletionRequest(
        model=model,
        messages=panel_messages(prompt=request.prompt, history=request.history),
        temperature=request.options.temperature,
        max_tokens=request.options.max_completion_tokens,
    )


@database_sync_to_async
def _heartbeat(comparison_id: int) -> str | None:
    """Refresh the heartbeat; the turn's status, or None when the comparison (its conversation) is gone."""
    Comparison.objects.filter(pk=comparison_id, status=Comparison.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )
    row = Comparison.objects.filter(pk=comparison_id).values_list("turn__status", flat=True).first()
    return None if row is None else str(row)


@database_sync_to_async
def _finish(comparison_id: int, **fields: Any) -> None:
    Comparison.objects.filter(pk=comparison_id, status=Comparison.Status.RUNNING).update(
        finished_at=timezone.now(), **fields
    )


async def baseline_run(*, comparison_id: int, request: FusionRequest, model: str) -> None:
    """Ask the baseline model and keep its answer, usage and cost on the comparison.

    A heartbeat is written every ``CHAT_HEARTBEAT_SECONDS`` while the call runs (a model may think for a
    long time without sending text); a turn that ends without a fused answer (failed, cancelled,
    interrupted) or is deleted cancels the call, since there is nothing left to compare it with.
    """
    gateway = gateway_from_settings()
    progress = CallProgress()
    status, error = Comparison.Status.DONE, ""
    call: asyncio.Task[str] | None = None
    try:
        client = gateway.client_for(model)
        call = asyncio.ensure_future(
            call_collect(
                client=client, request=baseline_request(request=request, model=model), progress=progress
            )
        )
        while not call.done():
            await asyncio.wait({call}, timeout=_heartbeat_seconds())
            if call.done():
                break
            turn_status = await _heartbeat(comparison_id)
            if turn_status is None or turn_status in _TURN_ENDED_WITHOUT_ANSWER:
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                status, error = Comparison.Status.CANCELLED, "The turn ended without a fused answer."
                break
        if status == Comparison.Status.DONE:
            text = call.result()
            if not text.strip():
                status, error = Comparison.Status.FAILED, f"{model} returned an empty answer."
    except ProviderError as exc:
        code = f" ({exc.status_code})" if exc.status_code else ""
        status, error = Comparison.Status.FAILED, f"{model} failed{code}: {exc.message}"
    except Exception as exc:  # an unknown model, a bug: the comparison ends, the turn is not concerned
        logger.exception("comparison %s: the baseline failed", comparison_id)
        status, error = Comparison.Status.FAILED, f"The single model's run stopped ({type(exc).__name__})."
    except asyncio.CancelledError:
        # The server is shutting down: the comparison ends interrupted, as a turn does.
        if call is not None:
            call.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(
                _finish(
                    comparison_id,
                    status=Comparison.Status.INTERRUPTED,
                    error="The server stopped while the single model was answering.",
                    text=text_storable(progress.text),
                    cost=usage_priced(gateway=gateway, model=model, progress=progress, cancelled=True).cost,
                )
            )
        raise
    # A call still going here was left by a failure around it (a heartbeat's write): it stops too.
    cut = call is not None and not call.done()
    if call is not None and cut:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await call
    cancelled = cut or status == Comparison.Status.CANCELLED
    usage = usage_priced(gateway=gateway, model=model, progress=progress, cancelled=cancelled)
    try:
        await _finish(
            comparison_id,
            status=status,
            error=error,
            text=text_storable(progress.text),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
            duration_ms=progress.timings().duration_ms,
        )
    except Exception:  # the heartbeat goes stale, and the block's next load ends it as interrupted
        logger.exception("comparison %s: saving the single model's answer failed", comparison_id)


def baseline_tasks() -> list[asyncio.Task[None]]:
    """The baseline tasks running in this process (tests wait on them)."""
    return list(_TASKS)


def comparisons_reap_stale(*, comparison_ids: list[int]) -> int:
    """End running baselines whose heartbeat is stale (their process died) as interrupted; how many."""
    cutoff = timezone.now() - _stale_after()
    return Comparison.objects.filter(
        pk__in=comparison_ids, status=Comparison.Status.RUNNING, heartbeat_at__lt=cutoff
    ).update(
        status=Comparison.Status.INTERRUPTED,
        error="The server process running the single model stopped.",
        finished_at=timezone.now(),
    )


# --- the vote ------------------------------------------------------------------------------------------


def comparison_ready(comparison: Comparison) -> bool:
    """Both answers exist: the turn's fused answer and the baseline's."""
    turn = comparison.turn
    return turn.status == "done" and bool(turn.final_text) and comparison.status == Comparison.Status.DONE


def comparison_vote(*, comparison: Comparison, vote: str) -> Comparison:
    """Record the owner's one vote (``"a"``, ``"b"`` or ``"tie"``). The caller found ``comparison`` among the
    user's own. ``ComparisonError`` for a bad choice, a comparison not ready yet or one already voted on."""
    if vote not in (Comparison.Vote.A, Comparison.Vote.B, Comparison.Vote.TIE):
        raise ComparisonError("Vote A, B or tie.")
    if not comparison_ready(comparison):
        raise ComparisonError("Both answers must be finished before a vote.")
    with transaction.atomic():
        updated = Comparison.objects.filter(pk=comparison.pk, vote="").update(
            vote=vote, voted_at=timezone.now()
        )
    if not updated:
        raise ComparisonError("This comparison already has its vote.")
    comparison.refresh_from_db()
    return comparison
