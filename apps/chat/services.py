"""What the chatroom does: conversations, turns, runs, share links. Views, the consumer and the API use it.

Contract used by ``apps.api`` (keep these signatures):

- ``conversation_create(*, owner, title="", source="web") -> Conversation``
- ``turn_create(*, conversation, prompt, panel_snapshot, panel=None) -> Turn``
- ``fusion_request_for(*, turn) -> FusionRequest``
- ``apps.chat.recorder.TurnRecorder(turn=turn)``: ``subscribe()``, then ``await start(events)``, records a run
  in a task of its own (persisted, broadcast) while the caller reads its events
- ``await turn_start(*, user, conversation, prompt, panel) -> Turn``
- ``await turn_cancel(*, user, turn_id) -> Turn``
- ``await turn_regenerate / turn_edit / turn_retry_failed(*, user, conversation_id, turn_id, ...) -> Turn``
  and ``await turn_version_show(*, user, conversation_id, turn_id, version) -> Turn``: acting on a turn

Bad input raises ``ChatError`` (a ``ValueError``) whose message is meant for the person who typed it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Max, Q
from django.utils import timezone
from pydantic import ValidationError

from apps.chat.models import Conversation, PanelAnswer, ShareLink, Turn
from apps.chat.presentation import seat_label
from apps.chat.runs import run_cancel_local, run_launch
from apps.chat.selectors import conversation_get_for, turn_state_for
from apps.chat.share_tokens import share_token_hash, share_token_new
from apps.chat.state import TurnState
from apps.comparisons.models import BaselineChoice
from apps.comparisons.services import baseline_enabled_for, comparison_start
from apps.fusion.schemas import (
    MAX_PROMPT_CHARS,
    FusionOptions,
    FusionRequest,
    KeptAnswer,
    PriorTurn,
    SeatSpec,
    Source,
)
from apps.panels.models import Panel
from apps.panels.runnability import panel_runnability
from apps.providers.base import text_storable

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser

TITLE_MAX_CHARS = 80
DEFAULT_CHANNEL_LAYER = "default"


class ChatError(ValueError):
    """Input the chatroom refuses, with a message fit to show to the person who sent it."""


def stale_after() -> timedelta:
    return timedelta(seconds=getattr(settings, "CHAT_STALE_AFTER_SECONDS", 30.0))


# --- conversations -------------------------------------------------------------------------------------


def conversation_create(*, owner: Any, title: str = "", source: str = "web") -> Conversation:
    """A new, empty conversation. ``source`` is ``"web"`` (the chatroom) or ``"api"`` (/api/v1 runs)."""
    if source not in Conversation.Source.values:
        raise ChatError(f"Unknown conversation source {source!r}")
    return Conversation.objects.create(owner=owner, title=title.strip()[:200], source=source)


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())
    if not title:
        raise ChatError("A title cannot be empty.")
    if len(title) > 200:
        raise ChatError("A title can be at most 200 characters.")
    conversation.title = title
    conversation.save(update_fields=["title"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its turns and share links. A run still going on stops on its next flush."""
    conversation.delete()


def title_from_prompt(prompt: str) -> str:
    words = " ".join(prompt.split())
    if len(words) <= TITLE_MAX_CHARS:
        return words
    return words[: TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"


# --- panels as the chatroom sees them ------------------------------------------------------------------


def panel_unavailable_reason(*, panel: Panel) -> str | None:
    """Why this panel cannot run here (None when it can): ``apps.panels.runnability.panel_runnability``'s
    reasons, the one rule the chooser, the composer, the socket and the API's model list all follow."""
    runnability = panel_runnability(panel=panel)
    return None if runnability.runnable else " ".join(runnability.reasons)


def panel_default_for(*, panels: list[Panel], conversation: Conversation | None = None) -> Panel | None:
    """The composer's default: the conversation's last panel, else Quality with a key, else the demo."""
    by_id = {panel.pk: panel for panel in panels}
    if conversation is not None and conversation.last_panel_id in by_id:
        return by_id[conversation.last_panel_id]
    wanted = "quality" if settings.OPENROUTER_API_KEY else "demo"
    for panel in panels:
        if panel.is_preset and panel.slug == wanted:
            return panel
    return panels[0] if panels else None


# --- turns ---------------------------------------------------------------------------------------------


def prompt_clean(prompt: str) -> str:
    prompt = text_storable(prompt.strip())
    if not prompt:
        raise ChatError("Type a prompt first: an empty message cannot be sent.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ChatError(
            f"That prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}. "
            "Shorten it and send again."
        )
    return prompt


def _seat_specs(seats: list[dict[str, Any]]) -> list[SeatSpec]:
    # A frozen seat also holds its display name and demo flag, which the engine's seat (extra=forbid) refuses.
    return [
        SeatSpec.model_validate(
            {k: seat.get(k) for k in ("seat", "model", "temperature", "system_prompt") if k in seat}
        )
        for seat in seats
    ]


def snapshot_validate(panel_snapshot: dict[str, Any]) -> dict[str, Any]:
    """Check a frozen panel and add each seat's display name and demo flag (kept with the turn for ever)."""
    try:
        seats = _seat_specs(panel_snapshot.get("seats", []))
        FusionRequest(
            prompt="x",
            seats=seats,
            judge=str(panel_snapshot.get("judge") or ""),
            writer=str(panel_snapshot.get("writer") or ""),
            options=options_from_snapshot(panel_snapshot),
        )
    except (ValidationError, TypeError, AttributeError) as exc:
        raise ChatError(f"This panel cannot run: {exc}") from exc
    frozen = dict(panel_snapshot)
    frozen["seats"] = []
    for spec in seats:
        name, is_demo = seat_label(spec.model)
        frozen["seats"].append({**spec.model_dump(), "name": name, "is_demo": is_demo})
    return frozen


def options_from_snapshot(panel_snapshot: dict[str, Any]) -> FusionOptions:
    # Panels keep presentation keys (e.g. "order") next to the run options; only the run options go on.
    raw = panel_snapshot.get("options") or {}
    return FusionOptions.model_validate({k: v for k, v in raw.items() if k in FusionOptions.model_fields})


def turn_create(
    *, conversation: Conversation, prompt: str, panel_snapshot: dict[str, Any], panel: Panel | None = None
) -> Turn:
    """A new running turn at the end of ``conversation``, with one waiting ``PanelAnswer`` per seat.

    Validates the prompt and the snapshot (``ChatError``), freezes the snapshot (seat names included),
    gives the conversation its title from its first prompt and moves it to the top of the list.
    """
    prompt = prompt_clean(prompt)
    frozen = snapshot_validate(panel_snapshot)
    now = timezone.now()
    with transaction.atomic():
        _conversation_lock(conversation.pk)
        last = conversation.turns.aggregate(last=Max("position"))["last"]
        turn = Turn.objects.create(
            conversation=conversation,
            position=(last or 0) + 1,
            prompt=prompt,
            panel=panel,
            panel_snapshot=frozen,
            heartbeat_at=now,
        )
        PanelAnswer.objects.bulk_create(
            PanelAnswer(turn=turn, seat=seat["seat"], model_id=seat["model"]) for seat in frozen["seats"]
        )
        fields = ["updated_at"]
        if not conversation.title:
            conversation.title = title_from_prompt(prompt)
            fields.append("title")
        if panel is not None:
            conversation.last_panel = panel
            fields.append("last_panel")
        conversation.save(update_fields=fields)
    return turn


def _conversation_lock(conversation_id: int) -> None:
    """Serialise the writes that add a turn to one conversation, inside their transaction. On PostgreSQL a
    row lock; SQLite's transactions start with the write lock already (``BEGIN IMMEDIATE``), so no query."""
    if connection.features.has_select_for_update:
        Conversation.objects.select_for_update().filter(pk=conversation_id).first()


def fusion_request_for(*, turn: Turn) -> FusionRequest:
    """The engine request for ``turn``: its frozen panel, its prompt and the earlier answered turns (the
    shown version of each earlier position)."""
    snapshot = turn.panel_snapshot
    earlier: list[tuple[str, str]] = []
    if turn.position > 1:  # a first turn has no history: no query
        earlier = list(
            Turn.objects.filter(conversation_id=turn.conversation_id, position__lt=turn.position, shown=True)
            .exclude(final_text="")
            .order_by("position")
            .values_list("prompt", "final_text")
        )
    return FusionRequest(
        prompt=turn.prompt,
        history=[PriorTurn(prompt=prompt, answer=answer) for prompt, answer in earlier],
        seats=_seat_specs(snapshot["seats"]),
        judge=snapshot["judge"],
        writer=snapshot["writer"],
        options=options_from_snapshot(snapshot),
    )


_STALE_MESSAGE = "The server process running this turn stopped."


def _stale(cutoff: Any) -> Q:
    """A running turn whose process stopped beating before ``cutoff`` (or never beat, started before it)."""
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)


def turns_reap_stale(*, conversation_id: int | None = None) -> int:
    """Mark running turns whose heartbeat is stale as interrupted (their process died); keep what was flushed.

    Returns how many turns were marked.
    """
    stale = Turn.objects.filter(_stale(timezone.now() - stale_after()), status=Turn.Status.RUNNING)
    if conversation_id is not None:
        stale = stale.filter(conversation_id=conversation_id)
    ids = list(stale.values_list("pk", flat=True))
    for turn_id in ids:
        turn_mark_interrupted(turn_id=turn_id, message=_STALE_MESSAGE)
    return len(ids)


def turn_running_live(*, conversation_id: int) -> bool:
    """Whether a run is going on in the conversation, in one query (a prompt's trip to the database thread,
    where a burst of prompts queues): its stale running turns are marked interrupted on the way, as
    ``turns_reap_stale`` does, and do not count."""
    stale = ExpressionWrapper(_stale(timezone.now() - stale_after()), output_field=BooleanField())
    running = Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING)
    live = False
    for turn_id, is_stale in running.annotate(is_stale=stale).values_list("pk", "is_stale"):
        if is_stale:
            turn_mark_interrupted(turn_id=turn_id, message=_STALE_MESSAGE)
        else:
            live = True
    return live


def turn_mark_interrupted(*, turn_id: int, message: str) -> bool:
    """End a running turn as interrupted (seats in flight become cancelled). False if it was not running."""
    with transaction.atomic():
        updated = Turn.objects.filter(pk=turn_id, status=Turn.Status.RUNNING).update(
            status=Turn.Status.INTERRUPTED,
            error_message=message,
            failure_reason="interrupted",
            finished_at=timezone.now(),
        )
        if updated:
            PanelAnswer.objects.filter(
                turn_id=turn_id, status__in=[PanelAnswer.Status.WAITING, PanelAnswer.Status.STREAMING]
            ).update(status=PanelAnswer.Status.CANCELLED)
    return bool(updated)


def turn_start_prepare(
    *, user: Any, conversation: Conversation, prompt: str, panel: Panel
) -> tuple[Turn, FusionRequest, BaselineChoice | None]:
    """What ``turn_start`` does on the database thread, in one trip (a burst of prompts queues there, and
    every query here is paid by each): the turn, its engine request and its comparison choice."""
    conversation = conversation_get_for(user=user, conversation_id=conversation.pk)
    snapshot = panel.snapshot()
    reason = panel_unavailable_reason_of(snapshot=snapshot)
    if reason:
        raise ChatError(f"The panel {panel.name!r} cannot run here. {reason}")
    if turn_running_live(conversation_id=conversation.pk):
        raise ChatError("A run is already in progress in this conversation: wait for it or cancel it.")
    turn = turn_create(conversation=conversation, prompt=prompt, panel_snapshot=snapshot, panel=panel)
    return turn, fusion_request_for(turn=turn), baseline_enabled_for(user=user, panel_id=panel.pk)


async def turn_start(
    *,
    user: Any,
    conversation: Conversation,
    prompt: str,
    panel: Panel,
    channel_layer_alias: str = DEFAULT_CHANNEL_LAYER,
) -> Turn:
    """The chatroom path: create the turn and start its run as a task owned by this server process.

    Must be awaited on the server's event loop (a consumer or an async view): the run outlives the request
    or socket that started it. Raises ``ChatError`` for a bad prompt, an unavailable panel or a run already
    going on in the conversation, and ``Conversation.DoesNotExist`` for someone else's conversation.
    """
    turn, request, choice = await database_sync_to_async(turn_start_prepare)(
        user=user, conversation=conversation, prompt=prompt, panel=panel
    )
    await run_launch(turn=turn, request=request, channel_layer_alias=channel_layer_alias)
    # The "compare with a single model" option: its baseline runs beside the turn, outside the panel.
    await comparison_start(user=user, turn=turn, request=request, choice=choice)
    return turn


@database_sync_to_async
def _turn_for_cancel(*, user: Any, turn_id: int) -> Turn:
    turn = Turn.objects.select_related("conversation").get(pk=turn_id, conversation__owner_id=user.pk)
    if turn.status == Turn.Status.RUNNING and turns_reap_stale(conversation_id=turn.conversation_id):
        turn.refresh_from_db()
    return turn


async def turn_cancel(*, user: Any, turn_id: int, channel_layer_alias: str = DEFAULT_CHANNEL_LAYER) -> Turn:
    """Ask the run of ``turn_id`` to stop, wherever (which process) it runs. What streamed is kept.

    ``Turn.DoesNotExist`` when the turn is not the user's. Cancelling a turn that already ended does nothing.
    """
    turn = await _turn_for_cancel(user=user, turn_id=turn_id)
    if turn.status != Turn.Status.RUNNING:
        return turn
    layer = get_channel_layer(channel_layer_alias)
    if turn.recorder_channel and layer is not None:
        # Through the channel layer even when the run is ours: one path, whichever process runs it.
        await layer.send(turn.recorder_channel, {"type": "run.cancel", "turn": turn.pk})
    else:
        run_cancel_local(turn_id=turn.pk)
    return turn


# --- acting on a finished turn: regenerate, edit and resend, retry failed seats, switch versions --------
#
# Only the conversation's last turn is regenerated or edited (a new version of it, the earlier ones kept):
# a later turn was asked with the earlier one's answer as its history, and versions of a middle turn would
# need a branch of every turn after it. Failed seats are retried in place on any shown turn, since the
# turn's question stays the same.

# Seat statuses a retry runs again: everything but a finished answer.
RETRY_STATUSES = (
    PanelAnswer.Status.FAILED,
    PanelAnswer.Status.MISSING,
    PanelAnswer.Status.CANCELLED,
    PanelAnswer.Status.WAITING,
    PanelAnswer.Status.STREAMING,
)


def turn_get_in(*, user: Any, conversation_id: int, turn_id: int) -> Turn:
    """One turn of one of the user's conversations; ``Turn.DoesNotExist`` for anything else."""
    return Turn.objects.select_related("conversation").get(
        pk=turn_id, conversation_id=conversation_id, conversation__owner_id=user.pk
    )


def _turn_action_check(*, turn: Turn, last_only: bool) -> None:
    """Refusals shared by every action on a turn, worded for the person who asked."""
    if turn_running_live(conversation_id=turn.conversation_id):
        raise ChatError("A run is in progress in this conversation: wait for it or cancel it first.")
    if not turn.shown:
        raise ChatError("That version of the turn is not the one shown: reload the page.")
    later = Turn.objects.filter(conversation_id=turn.conversation_id, position__gt=turn.position)
    if last_only and later.exists():
        raise ChatError("Only the last turn of a conversation can be regenerated or edited.")
    reason = panel_unavailable_reason_of(snapshot=turn.panel_snapshot)
    if reason:
        raise ChatError(f"This turn's panel cannot run here now. {reason}")


def panel_unavailable_reason_of(*, snapshot: dict[str, Any]) -> str | None:
    """Why a turn's frozen panel cannot run here now (None when it can)."""
    runnability = panel_runnability(panel=snapshot)
    return None if runnability.runnable else " ".join(runnability.reasons)


def turn_version_create(*, turn: Turn, prompt: str) -> Turn:
    """A new running version of ``turn``'s position with ``prompt`` and the same frozen panel, shown in its
    place; the earlier versions are kept. ``ChatError`` if a run started meanwhile."""
    prompt = prompt_clean(prompt)
    with transaction.atomic():
        _conversation_lock(turn.conversation_id)
        if Turn.objects.filter(conversation_id=turn.conversation_id, status=Turn.Status.RUNNING).exists():
            raise ChatError("A run is in progress in this conversation: wait for it or cancel it first.")
        same_place = Turn.objects.filter(conversation_id=turn.conversation_id, position=turn.position)
        last = same_place.aggregate(last=Max("version"))["last"] or 0
        # The old version stops being shown first: one shown version per position, at every moment.
        same_place.filter(shown=True).update(shown=False)
        version = Turn.objects.create(
            conversation_id=turn.conversation_id,
            position=turn.position,
            version=last + 1,
            shown=True,
            prompt=prompt,
            panel=turn.panel,
            panel_snapshot=turn.panel_snapshot,
            heartbeat_at=timezone.now(),
        )
        PanelAnswer.objects.bulk_create(
            PanelAnswer(turn=version, seat=seat["seat"], model_id=seat["model"])
            for seat in turn.panel_snapshot.get("seats", [])
        )
        Conversation.objects.filter(pk=turn.conversation_id).update(updated_at=timezone.now())
    return version


@database_sync_to_async
def _turn_version_prepare(
    *, user: Any, conversation_id: int, turn_id: int, prompt: str | None
) -> tuple[Turn, FusionRequest, BaselineChoice | None]:
    """The new version, its engine request and its comparison choice, in one trip (as a new turn's)."""
    turn = turn_get_in(user=user, conversation_id=conversation_id, turn_id=turn_id)
    _turn_action_check(turn=turn, last_only=True)
    version = turn_version_create(turn=turn, prompt=turn.prompt if prompt is None else prompt)
    return (
        version,
        fusion_request_for(turn=version),
        baseline_enabled_for(user=user, panel_id=version.panel_id),
    )


async def turn_regenerate(
    *, user: Any, conversation_id: int, turn_id: int, channel_layer_alias: str = DEFAULT_CHANNEL_LAYER
) -> Turn:
    """Run the last turn again, same prompt and panel, as a new version shown in its place (the earlier
    versions are kept). ``Turn.DoesNotExist`` for a turn that is not the user's in this conversation;
    ``ChatError`` while a run is going on, for a turn that is not the last or a panel that cannot run."""
    turn, request, choice = await _turn_version_prepare(
        user=user, conversation_id=conversation_id, turn_id=turn_id, prompt=None
    )
    await run_launch(turn=turn, request=request, channel_layer_alias=channel_layer_alias)
    # A new version is a new answer to compare: its baseline runs too, when the panel's option is on.
    await comparison_start(user=user, turn=turn, request=request, choice=choice)
    return turn


async def turn_edit(
    *,
    user: Any,
    conversation_id: int,
    turn_id: int,
    prompt: str,
    channel_layer_alias: str = DEFAULT_CHANNEL_LAYER,
) -> Turn:
    """Send the last turn again with an edited prompt: a new version, as ``turn_regenerate``."""
    turn, request, choice = await _turn_version_prepare(
        user=user, conversation_id=conversation_id, turn_id=turn_id, prompt=prompt
    )
    await run_launch(turn=turn, request=request, channel_layer_alias=channel_layer_alias)
    # A new version is a new answer to compare: its baseline runs too, when the panel's option is on.
    await comparison_start(user=user, turn=turn, request=request, choice=choice)
    return turn


@database_sync_to_async
def _turn_retry_prepare(
    *, user: Any, conversation_id: int, turn_id: int
) -> tuple[Turn, FusionRequest, TurnState]:
    turn = turn_get_in(user=user, conversation_id=conversation_id, turn_id=turn_id)
    _turn_action_check(turn=turn, last_only=False)
    answers = list(turn.answers.order_by("seat"))
    retried = [answer for answer in answers if answer.status in RETRY_STATUSES]
    if not retried:
        raise ChatError("Every seat of this turn answered: there is nothing to retry.")
    with transaction.atomic():
        _conversation_lock(turn.conversation_id)
        if Turn.objects.filter(conversation_id=turn.conversation_id, status=Turn.Status.RUNNING).exists():
            raise ChatError("A run is in progress in this conversation: wait for it or cancel it first.")
        # The turn runs again from its panel phase: the kept seats' answers stay, the rest starts afresh;
        # the analysis and the fused answer are written anew. Its totals stay until the run adds to them.
        Turn.objects.filter(pk=turn.pk).update(
            status=Turn.Status.RUNNING,
            phase=Turn.Phase.PANEL,
            analysis=None,
            analysis_raw="",
            analysis_error="",
            analysis_error_detail="",
            final_text="",
            failure_reason="",
            error_message="",
            finished_at=None,
            recorder_channel="",
            heartbeat_at=timezone.now(),
        )
        PanelAnswer.objects.filter(pk__in=[answer.pk for answer in retried]).update(
            content="",
            reasoning="",
            status=PanelAnswer.Status.WAITING,
            error="",
            status_code=None,
            prompt_tokens=0,
            completion_tokens=0,
            cost=None,
            usage_estimated=False,
            ttft_ms=None,
            duration_ms=None,
            sources=[],
            tool_calls=[],
        )
    turn.refresh_from_db()
    state = turn_state_for(turn_id=turn.pk)
    for seat in state.seats:
        seat.kept = seat.status == PanelAnswer.Status.DONE
    state.totals_before = dict(turn.totals or {})
    request = fusion_request_for(turn=turn)
    state.history_chars = sum(len(prior.prompt) + len(prior.answer) for prior in request.history)
    kept = [
        KeptAnswer(
            seat=answer.seat,
            model=answer.model_id,
            content=answer.content,
            sources=[Source.model_validate(source) for source in answer.sources or []],
        )
        for answer in answers
        if answer.status == PanelAnswer.Status.DONE
    ]
    # Every retried seat is waited for (within the deadline): they are what the retry is for.
    options = request.options.model_copy(update={"quorum": None})
    return turn, request.model_copy(update={"kept": kept, "options": options}), state


async def turn_retry_failed(
    *, user: Any, conversation_id: int, turn_id: int, channel_layer_alias: str = DEFAULT_CHANNEL_LAYER
) -> Turn:
    """Run a finished turn's failed (or missing, or stopped) seats again, keeping the answered ones, then
    the judge and the writer over the full set. In place: the turn's analysis and fused answer are
    replaced, its cost is what it cost before plus this run. ``ChatError`` while a run is going on or
    when every seat answered."""
    turn, request, state = await _turn_retry_prepare(
        user=user, conversation_id=conversation_id, turn_id=turn_id
    )
    await run_launch(turn=turn, request=request, channel_layer_alias=channel_layer_alias, state=state)
    return turn


@database_sync_to_async
def turn_version_show(*, user: Any, conversation_id: int, turn_id: int, version: int) -> Turn:
    """Show another version of ``turn_id``'s position in its place (kept across reloads; later turns' history
    reads the shown version). ``Turn.DoesNotExist`` for no such version; ``ChatError`` while a run goes on."""
    turn = turn_get_in(user=user, conversation_id=conversation_id, turn_id=turn_id)
    turns_reap_stale(conversation_id=turn.conversation_id)
    with transaction.atomic():
        _conversation_lock(turn.conversation_id)
        if Turn.objects.filter(conversation_id=turn.conversation_id, status=Turn.Status.RUNNING).exists():
            raise ChatError("A run is in progress in this conversation: wait for it or cancel it first.")
        same_place = Turn.objects.filter(conversation_id=turn.conversation_id, position=turn.position)
        chosen = same_place.get(version=version)
        if not chosen.shown:
            same_place.filter(shown=True).update(shown=False)
            same_place.filter(pk=chosen.pk).update(shown=True)
            chosen.shown = True
    return chosen


# --- share links ---------------------------------------------------------------------------------------


def share_link_create(*, conversation: Conversation) -> tuple[ShareLink, str]:
    """A new read-only link. Returns the row and the token, which is shown once and never stored."""
    token = share_token_new()
    link = ShareLink.objects.create(conversation=conversation, token_hash=share_token_hash(token))
    return link, token


def share_link_revoke(*, link: ShareLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
