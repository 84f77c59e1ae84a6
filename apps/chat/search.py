"""Search in a user's history: conversations whose title or any prompt contains the words typed.

One query whatever the number of conversations or turns: the user's conversations (index ``owner,
-updated_at``) walked newest first, each kept if its title matches or an ``EXISTS`` finds a matching prompt
among its turns (index ``conversation, position``), the first matching prompt picked by a subquery for the
snippet, stopped at ``limit``. A common word stops early; a rare one reads every turn of that user once (a few
milliseconds for thousands of conversations: ``python -m bench --only search``). Matching is ``icontains``:
``LIKE`` on SQLite (case-insensitive for ASCII), ``UPPER(..) LIKE`` on PostgreSQL. A trigram index
(``pg_trgm``) would make one user's scan sub-linear, at the cost of an extension, bigger writes on every
flush of a streaming prompt's turn, and nothing on SQLite; at these sizes the owner-scoped scan is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from apps.chat.models import Conversation, Turn

MAX_QUERY_CHARS = 100
SEARCH_LIMIT = 20
# Characters of the prompt shown either side of the match.
SNIPPET_CONTEXT = 40


@dataclass(frozen=True)
class SearchHit:
    """A conversation found; the snippet is the first matching prompt around the match (before, match,
    after: the template escapes each), all empty when only the title matched."""

    conversation_id: int
    title: str
    source: str
    before: str = ""
    match: str = ""
    after: str = ""

    @property
    def has_snippet(self) -> bool:
        return bool(self.match)


def search_query_clean(raw: str | None) -> str:
    return " ".join((raw or "").split())[:MAX_QUERY_CHARS]


def _snippet(prompt: str, query: str) -> tuple[str, str, str]:
    flat = " ".join(prompt.split())
    at = flat.lower().find(query.lower())
    if at < 0:
        # The database matched where Python's lower() does not (case rules beyond ASCII): show the start.
        return "", flat[: SNIPPET_CONTEXT * 2] + ("…" if len(flat) > SNIPPET_CONTEXT * 2 else ""), ""
    start = max(0, at - SNIPPET_CONTEXT)
    end = min(len(flat), at + len(query) + SNIPPET_CONTEXT)
    before = ("…" if start > 0 else "") + flat[start:at]
    after = flat[at + len(query) : end] + ("…" if end < len(flat) else "")
    return before, flat[at : at + len(query)], after


def conversation_search_rows(*, user_id: int, query: str, limit: int = SEARCH_LIMIT) -> QuerySet[Any]:
    """The one query: ``(pk, title, source, first matching prompt or None)`` rows, newest first."""
    # The owner test inside the subquery too: PostgreSQL runs an EXISTS under an OR as one hashed subplan
    # over every matching turn, which without it reads the turns of every user of the instance.
    # Only the shown version of each turn: an earlier, edited prompt is not on the page to be found.
    matching_turns = Turn.objects.filter(
        conversation_id=OuterRef("pk"), conversation__owner_id=user_id, shown=True, prompt__icontains=query
    )
    return (
        Conversation.objects.filter(owner_id=user_id)
        .filter(Q(title__icontains=query) | Exists(matching_turns))
        .annotate(hit_prompt=Subquery(matching_turns.order_by("position").values("prompt")[:1]))
        .order_by("-updated_at", "-pk")
        .values_list("pk", "title", "source", "hit_prompt")[:limit]
    )


def conversation_search_for(*, user: Any, query: str, limit: int = SEARCH_LIMIT) -> list[SearchHit]:
    """The user's conversations matching ``query`` (already cleaned), most recently active first."""
    if not user.is_authenticated or not query:
        return []
    rows = conversation_search_rows(user_id=user.pk, query=query, limit=limit)
    hits = []
    for pk, title, source, prompt in rows:
        before, match, after = _snippet(prompt, query) if prompt else ("", "", "")
        hits.append(SearchHit(pk, title, source, before, match, after))
    return hits
