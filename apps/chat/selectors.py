"""Read-side queries of the chatroom. Everything a user can reach is filtered by owner here."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone

from apps.chat.models import Conversation, PanelAnswer, ShareLink, Turn
from apps.chat.share_tokens import share_token_hash
from apps.chat.state import TurnState, turn_state_from_db


def conversation_list_for(*, user: Any) -> QuerySet[Conversation]:
    """The user's conversations, most recently active first."""
    if not user.is_authenticated:
        return Conversation.objects.none()
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at", "-pk")


def last_panel_id_for(*, user: Any) -> int | None:
    """The panel of the person's most recently active conversation that ran one (a new conversation's
    default, when it can run)."""
    if not user.is_authenticated:
        return None
    found: int | None = (
        Conversation.objects.filter(owner_id=user.pk, last_panel__isnull=False)
        .order_by("-updated_at", "-pk")
        .values_list("last_panel_id", flat=True)
        .first()
    )
    return found


def conversation_get_for(*, user: Any, conversation_id: int) -> Conversation:
    """One of the user's conversations; ``Conversation.DoesNotExist`` for anyone else's (404, not 403)."""
    return conversation_list_for(user=user).get(pk=conversation_id)


def turn_states_for(*, conversation: Conversation) -> list[TurnState]:
    """Every turn of a conversation, oldest first, as the templates render them: the shown version of each
    position, knowing how many versions it has."""
    turns = (
        conversation.turns.filter(shown=True)
        .order_by("position")
        .prefetch_related(Prefetch("answers", queryset=PanelAnswer.objects.order_by("seat")))
    )
    versions = _versions_by_position(conversation.turns.all())
    states, history = [], 0
    for turn in turns:
        state = turn_state_from_db(turn, list(turn.answers.all()))
        state.history_chars = history
        state.versions = versions.get(turn.position, 1)
        history += len(turn.prompt) + len(turn.final_text)
        states.append(state)
    if states:
        for state in states[:-1]:
            state.is_last = False
    return states


def _versions_by_position(turns: QuerySet[Turn]) -> dict[int, int]:
    rows = turns.order_by().values("position").annotate(count=Count("pk")).values_list("position", "count")
    return dict(rows)


def turn_state_for(*, turn_id: int) -> TurnState:
    turn = Turn.objects.get(pk=turn_id)
    state = turn_state_from_db(turn, list(turn.answers.order_by("seat")))
    siblings = Turn.objects.filter(conversation_id=turn.conversation_id)
    state.versions = siblings.filter(position=turn.position).count()
    state.is_last = not siblings.filter(position__gt=turn.position).exists()
    return state


def running_turn_ids(*, conversation_id: int) -> list[int]:
    return list(
        Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING).values_list(
            "pk", flat=True
        )
    )


def share_links_for(*, conversation: Conversation) -> QuerySet[ShareLink]:
    return conversation.share_links.filter(revoked_at__isnull=True).order_by("-created_at")


def share_link_get_for(*, user: Any, conversation: Conversation, link_id: int) -> ShareLink:
    if conversation.owner_id != user.pk:
        raise ShareLink.DoesNotExist
    return conversation.share_links.get(pk=link_id)


def shared_conversation_get(*, token: str) -> Conversation:
    """The conversation behind a share token; ``Conversation.DoesNotExist`` for a wrong or revoked token."""
    if not token or len(token) > 100:
        raise Conversation.DoesNotExist
    link = (
        ShareLink.objects.select_related("conversation")
        .filter(token_hash=share_token_hash(token), revoked_at__isnull=True)
        .first()
    )
    if link is None or (link.revoked_at is not None and link.revoked_at <= timezone.now()):
        raise Conversation.DoesNotExist
    return link.conversation
