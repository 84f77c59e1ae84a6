"""The history sidebar's search over titles and prompts: the owner's conversations only, a snippet of the
matching prompt (escaped), an empty state, and one query however long the history is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.chat.models import Conversation, Turn
from apps.chat.search import SEARCH_LIMIT, conversation_search_for
from apps.chat.services import conversation_create
from tests.chat.conftest import user_make

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def alice() -> Any:
    return user_make("alice")


@pytest.fixture
def owner_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def conversation_with(owner: Any, title: str, *prompts: str) -> Conversation:
    conversation = conversation_create(owner=owner, title=title)
    for position, prompt in enumerate(prompts, start=1):
        Turn.objects.create(conversation=conversation, position=position, prompt=prompt, status="done")
    return conversation


def history_make(owner: Any, conversations: int, turns: int = 3) -> None:
    """``conversations`` conversations of ``turns`` prompts each, in two bulk inserts."""
    made = Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"Chat number {n}") for n in range(conversations)
    )
    Turn.objects.bulk_create(
        Turn(
            conversation=c,
            position=p,
            prompt=f"Question {p} of chat {c.pk} about routine things",
            status="done",
        )
        for c in made
        for p in range(1, turns + 1)
    )


def test_a_prompt_word_finds_its_conversation_with_the_matching_snippet(
    owner_client: Client, alice: Any
) -> None:
    conversation_with(alice, "Databases", "Which is better, PostgreSQL or MySQL?")
    found = conversation_with(alice, "Gardening", "When do I plant tulips?", "And how deep do the bulbs go?")
    response = owner_client.get("/search/", {"q": "BULBS"}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'href="/c/{found.pk}/"' in body and "Gardening" in body and "Databases" not in body
    assert "And how deep do the <mark>bulbs</mark> go?" in body


def test_an_earlier_version_of_an_edited_prompt_is_not_found(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with(alice, "Bread", "How long to knead brioche?")
    Turn.objects.filter(conversation=conversation).update(shown=False)
    Turn.objects.create(
        conversation=conversation, position=1, version=2, prompt="How long to proof?", status="done"
    )
    assert conversation_search_for(user=alice, query="brioche") == []
    assert [hit.match for hit in conversation_search_for(user=alice, query="proof")] == ["proof"]


def test_a_title_word_finds_its_conversation_without_a_snippet(owner_client: Client, alice: Any) -> None:
    found = conversation_with(alice, "Trip to Lisbon", "What to pack?")
    body = owner_client.get("/search/", {"q": "lisbon"}, headers=HTMX).content.decode()
    assert f'href="/c/{found.pk}/"' in body and "<mark>" not in body


def test_prompt_text_in_results_is_escaped(owner_client: Client, alice: Any) -> None:
    conversation_with(alice, "<b>Title</b>", "Try <script>window.__x=1</script> here")
    body = owner_client.get("/search/", {"q": "<script>"}, headers=HTMX).content.decode()
    assert "<script>" not in body and "<b>Title" not in body
    assert "Try <mark>&lt;script&gt;</mark>window.__x=1&lt;/script&gt; here" in body


def test_no_match_says_so_with_the_words_escaped(owner_client: Client, alice: Any) -> None:
    conversation_with(alice, "Databases", "PostgreSQL?")
    body = owner_client.get("/search/", {"q": "<i>zebra</i>"}, headers=HTMX).content.decode()
    assert "No conversation matches “&lt;i&gt;zebra&lt;/i&gt;”." in body
    assert 'data-testid="search-hits"' not in body


def test_an_empty_query_gives_back_nothing_so_the_list_shows_again(owner_client: Client, alice: Any) -> None:
    conversation_with(alice, "Databases", "PostgreSQL?")
    assert owner_client.get("/search/", {"q": "   "}, headers=HTMX).content.decode().strip() == ""


def test_someone_elses_conversations_are_never_found(owner_client: Client, alice: Any) -> None:
    bob = user_make("bob")
    conversation_with(bob, "Bob's secret plans", "secret question")
    mine = conversation_with(alice, "My secret", "nothing much")
    body = owner_client.get("/search/", {"q": "secret"}, headers=HTMX).content.decode()
    assert "Bob" not in body and "secret question" not in body and f'href="/c/{mine.pk}/"' in body
    anonymous = Client().get("/search/", {"q": "secret"}, headers=HTMX)
    assert anonymous.status_code == 302


def test_without_htmx_the_chatroom_opens_with_the_results_in_its_sidebar(
    owner_client: Client, alice: Any
) -> None:
    found = conversation_with(alice, "Gardening", "tulips")
    body = owner_client.get("/search/", {"q": "tulip"}).content.decode()
    assert 'id="composer"' in body and 'value="tulip"' in body
    assert f'href="/c/{found.pk}/"' in body and "<mark>tulip</mark>s" in body


def test_the_room_has_a_labelled_debounced_search_box(owner_client: Client) -> None:
    body = owner_client.get("/").content.decode()
    assert '<label class="visually-hidden" for="conversation-search">Search conversations</label>' in body
    assert 'hx-trigger="input changed delay:300ms"' in body and 'type="search"' in body


def test_search_over_thousands_of_conversations_is_one_query_and_finds_the_old_one(alice: Any) -> None:
    history_make(alice, 3000, turns=3)
    old = conversation_with(
        alice, "Sourdough", "How long should a levain ferment?", "And at what temperature?"
    )
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=400))
    history_make(user_make("bob"), 50, turns=3)

    with CaptureQueriesContext(connection) as rare:
        hits = conversation_search_for(user=alice, query="levain")
    assert [hit.conversation_id for hit in hits] == [old.pk]
    assert (hits[0].before, hits[0].match, hits[0].after) == ("How long should a ", "levain", " ferment?")

    with CaptureQueriesContext(connection) as common:
        hits = conversation_search_for(user=alice, query="routine")
    newest = Conversation.objects.filter(owner=alice).order_by("-updated_at", "-pk")
    assert [hit.conversation_id for hit in hits] == list(newest.values_list("pk", flat=True)[:SEARCH_LIMIT])
    assert all(hit.match == "routine" and hit.before.startswith("Question 1 of chat") for hit in hits)

    with CaptureQueriesContext(connection) as title:
        hits = conversation_search_for(user=alice, query="chat number 2999")
    assert len(hits) == 1 and hits[0].title == "Chat number 2999"

    assert len(rare.captured_queries) == len(common.captured_queries) == len(title.captured_queries) == 1
