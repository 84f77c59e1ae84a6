"""The chatroom pages and htmx actions: what the owner sees and can do, and that nobody else can."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Conversation, PanelAnswer, ShareLink, Turn
from apps.chat.services import conversation_create, share_link_create, turn_create
from apps.fusion.schemas import MAX_PROMPT_CHARS
from tests.chat.conftest import demo_panel, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> Any:
    return user_make("alice")


@pytest.fixture
def owner_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def stranger_client() -> Client:
    client = Client()
    client.force_login(user_make("mallory"))
    return client


def conversation_with_turn(owner: Any, *, title: str = "Databases", status: str = "done") -> Conversation:
    conversation = conversation_create(owner=owner, title=title)
    turn = Turn.objects.create(
        conversation=conversation,
        position=1,
        prompt="Which is better, PostgreSQL or <b>MySQL</b>?",
        panel_snapshot={
            "name": "Demo (offline)",
            "judge": "demo/judge",
            "writer": "demo/writer",
            "seats": [{"seat": 1, "model": "demo/atlas", "name": "Atlas (demo)", "is_demo": True}],
        },
        status=status,
        phase="finished" if status == "done" else "panel",
        analysis={
            "consensus": ["Both are solid"],
            "contradictions": [
                {
                    "topic": "Replication",
                    "stances": [{"model": "demo/atlas", "stance": "PostgreSQL's is simpler"}],
                }
            ],
            "partial_coverage": [],
            "unique_insights": [{"model": "demo/atlas", "insight": "Extensions matter"}],
            "blind_spots": ["Licensing"],
        },
        final_text="**Pick PostgreSQL** <script>alert(1)</script>",
        totals={"duration_ms": 1234.0, "usage": {"total_tokens": 42}},
        cost=0.0,
    )
    PanelAnswer.objects.create(
        turn=turn, seat=1, model_id="demo/atlas", content="Atlas says *hi*", status="done"
    )
    return conversation


def test_a_visitor_sees_the_landing_page_and_no_room(client: Client) -> None:
    body = client.get("/").content.decode()
    assert "log in" in body.lower()
    assert 'id="composer"' not in body


def test_a_new_user_gets_an_empty_state_and_the_demo_panel_by_default(owner_client: Client) -> None:
    body = owner_client.get("/").content.decode()
    assert "Ask a panel of models" in body
    assert "No conversations yet" in body
    selected = re.search(r'<option value="(\d+)" selected', body)
    assert selected and int(selected[1]) == demo_panel().pk


@pytest.mark.parametrize("extra", [1, MAX_PROMPT_CHARS - 10])
def test_a_prompt_over_the_limit_is_refused_in_the_composer_and_kept_whole(
    owner_client: Client, extra: int
) -> None:
    prompt = "é" * (MAX_PROMPT_CHARS + extra)
    response = owner_client.post("/c/new/", {"prompt": prompt, "panel": demo_panel().pk})
    body = response.content.decode()
    assert response.status_code == 400
    assert f"the limit is {MAX_PROMPT_CHARS:,}" in body and 'id="composer-error"' in body
    box = re.search(r'<textarea id="prompt"[^>]*>([^<]*)</textarea>', body)
    assert box is not None and box[1] == prompt
    assert 'maxlength="' not in box[0]
    assert not Conversation.objects.exists()


def test_a_prompt_with_nul_characters_is_saved_with_them_replaced(alice: Any) -> None:
    # PostgreSQL refuses NUL in text columns; the prompt must still be saved (and its title made).
    conversation = conversation_create(owner=alice)
    turn = turn_create(
        conversation=conversation, prompt="tabs\x00or spaces?", panel_snapshot=demo_panel().snapshot()
    )
    turn.refresh_from_db()
    conversation.refresh_from_db()
    assert turn.prompt == "tabs\ufffdor spaces?"
    assert "\x00" not in conversation.title


def test_the_conversation_page_renders_every_turn_from_the_database(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    body = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'data-turn-status="done"' in body
    assert 'data-seat="1"' in body and 'data-model="demo/atlas"' in body
    assert 'data-section="analysis"' in body and 'data-section="final"' in body
    assert "<strong>Pick PostgreSQL</strong>" in body
    assert "<script>alert(1)</script>" not in body and "&lt;b&gt;MySQL&lt;/b&gt;" in body
    assert "Replication" in body and "Atlas (demo)" in body and "Licensing" in body
    assert f'data-ws-path="/ws/conversations/{conversation.pk}/"' in body


def test_a_failed_seat_says_so_in_plain_words_and_keeps_the_providers_detail(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_with_turn(alice)
    turn = conversation.turns.get()
    turn.panel_snapshot["seats"].append({"seat": 2, "model": "bad/x", "name": "bad/x", "is_demo": False})
    turn.save(update_fields=["panel_snapshot"])
    detail = "bad: connection failed (ConnectError: [Errno 111] Connect call failed ('127.0.0.1', 9))"
    PanelAnswer.objects.create(turn=turn, seat=2, model_id="bad/x", status="failed", error=detail)
    body = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    column = re.search(r'<section class="column status-failed".*?</section>', body, re.S)
    assert column is not None
    assert "This model could not answer." in column[0]
    assert "What went wrong: bad: connection failed (ConnectError: [Errno 111]" in column[0]
    assert "status-done" in body  # the other seat's answer is still there


def test_the_sidebar_lists_only_my_conversations_newest_first(owner_client: Client, alice: Any) -> None:
    older = conversation_with_turn(alice, title="Older one")
    newer = conversation_with_turn(alice, title="Newer one")
    conversation_with_turn(user_make("bob"), title="Bob's secret")
    body = owner_client.get(f"/c/{older.pk}/").content.decode()
    assert "Bob&#x27;s secret" not in body and "Bob's secret" not in body
    sidebar = body[body.index('id="conversation-list"') :]
    assert sidebar.index("Newer one") < sidebar.index("Older one")
    assert newer.pk != older.pk


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/{c}/"),
        ("get", "/c/{c}/rename/"),
        ("post", "/c/{c}/rename/"),
        ("get", "/c/{c}/item/"),
        ("post", "/c/{c}/delete/"),
        ("post", "/c/{c}/share/"),
        ("post", "/c/{c}/share/{link}/revoke/"),
        ("post", "/c/{c}/send/"),
    ],
)
def test_another_user_gets_404_on_every_page_and_action(
    stranger_client: Client, alice: Any, method: str, path: str
) -> None:
    conversation = conversation_with_turn(alice)
    link, _token = share_link_create(conversation=conversation)
    url = path.format(c=conversation.pk, link=link.pk)
    data = {"title": "pwned", "prompt": "hello", "panel": demo_panel().pk}
    response = getattr(stranger_client, method)(url, data) if method == "post" else stranger_client.get(url)
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Databases"
    assert ShareLink.objects.filter(conversation=conversation).count() == 1
    assert not ShareLink.objects.get(pk=link.pk).revoked_at
    assert conversation.turns.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    response = client.get(f"/c/{conversation.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_owner_renames_a_conversation_with_htmx(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    form = owner_client.get(f"/c/{conversation.pk}/rename/", HTTP_HX_REQUEST="true")
    assert 'name="title"' in form.content.decode()
    response = owner_client.post(f"/c/{conversation.pk}/rename/", {"title": "  Postgres   vs MySQL "})
    assert response.status_code == 200 and "Postgres vs MySQL" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Postgres vs MySQL"


def test_an_empty_title_is_refused_where_the_user_sees_it(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    response = owner_client.post(f"/c/{conversation.pk}/rename/", {"title": "   "})
    # 422, which htmx swaps in (a 400 would leave the form as it was, saying nothing).
    assert response.status_code == 422
    assert "cannot be empty" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Databases"


def test_a_rename_on_the_conversations_page_updates_its_heading_title_and_current_entry(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_with_turn(alice)
    page = f"http://testserver/c/{conversation.pk}/"
    response = owner_client.post(
        f"/c/{conversation.pk}/rename/",
        {"title": "Postgres <b>vs</b> MySQL"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=page,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="conversation-item current"' in html and 'aria-current="page"' in html
    assert re.search(r'<a href="/c/\d+/" aria-current="page" autofocus>', html)
    assert '<h1 class="conversation-title" id="conversation-title" hx-swap-oob="true">' in html
    assert "<title>Postgres &lt;b&gt;vs&lt;/b&gt; MySQL · Fusion Room</title>" in html
    # Renamed from another conversation's page: only the entry comes back, not current, no heading.
    other = conversation_with_turn(alice, title="Other")
    response = owner_client.post(
        f"/c/{other.pk}/rename/",
        {"title": "Else"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=page,
    )
    html = response.content.decode()
    assert "current" not in html and "hx-swap-oob" not in html and "<title>" not in html
    assert "Else" in html and "autofocus" in html


def test_giving_up_a_rename_brings_the_entry_back_with_focus(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    response = owner_client.get(
        f"/c/{conversation.pk}/item/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/c/{conversation.pk}/",
    )
    html = response.content.decode()
    assert 'class="conversation-item current"' in html and "autofocus" in html
    assert "hx-swap-oob" not in html


def test_the_owner_deletes_a_conversation_and_everything_in_it(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    other = conversation_with_turn(alice, title="Keep me")
    response = owner_client.post(
        f"/c/{conversation.pk}/delete/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/c/{other.pk}/",
    )
    assert response.status_code == 200 and response.content == b""
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Turn.objects.filter(conversation_id=conversation.pk).exists()
    assert Conversation.objects.filter(pk=other.pk).exists()


def test_deleting_the_conversation_on_screen_sends_the_page_home(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    response = owner_client.post(
        f"/c/{conversation.pk}/delete/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/c/{conversation.pk}/",
    )
    assert response["HX-Redirect"] == "/"


def test_a_share_link_shows_the_whole_conversation_read_only(
    owner_client: Client, client: Client, alice: Any
) -> None:
    conversation = conversation_with_turn(alice)
    conversation_with_turn(alice, title="Private other conversation")
    response = owner_client.post(f"/c/{conversation.pk}/share/", HTTP_HX_REQUEST="true")
    panel = response.content.decode()
    url = re.search(r'value="(http://testserver/s/[^"]+/)"', panel)
    assert url, panel
    token = url[1].rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 43
    link = ShareLink.objects.get(conversation=conversation)
    # The panel says what a visitor may do, and revokes this link of this conversation.
    assert "can read the whole conversation, but not continue it. It is shown only this once" in panel
    assert f'hx-post="/c/{conversation.pk}/share/{link.pk}/revoke/"' in panel
    assert f'hx-post="/c/{conversation.pk}/share/"' in panel and "Create another share link" in panel
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ShareLink.objects.values_list().get())

    shared = client.get(f"/s/{token}/")
    body = shared.content.decode()
    assert shared.status_code == 200
    assert "Which is better, PostgreSQL" in body and "<strong>Pick PostgreSQL</strong>" in body
    assert 'data-section="analysis"' in body and 'data-model="demo/atlas"' in body
    for owner_only in ('id="composer"', "data-ws-path", "conversation-list", "Private other conversation"):
        assert owner_only not in body
    assert "data-cancel-turn" not in body and "/share/" not in body
    assert shared["Referrer-Policy"] == "no-referrer"


def test_a_revoked_or_wrong_share_token_is_a_404(owner_client: Client, client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    link, token = share_link_create(conversation=conversation)
    assert client.get(f"/s/{token}/").status_code == 200
    assert client.get(f"/s/{token[:-2]}xx/").status_code == 404
    response = owner_client.post(f"/c/{conversation.pk}/share/{link.pk}/revoke/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    gone = client.get(f"/s/{token}/")
    assert gone.status_code == 404
    # A page that says what happened, in the site's layout, rather than a bare "Not Found".
    body = gone.content.decode()
    assert "link stops working when its" in body and "owner revokes it" in body
    assert 'class="topbar"' in body and "Which is better" not in body


def test_a_shared_page_cannot_start_a_run(client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    _link, token = share_link_create(conversation=conversation)
    assert client.post(f"/s/{token}/", {"prompt": "hi", "panel": demo_panel().pk}).status_code == 405
    response = client.post(f"/c/{conversation.pk}/send/", {"prompt": "hi", "panel": demo_panel().pk})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert conversation.turns.count() == 1


def test_a_running_turn_with_a_stale_heartbeat_is_shown_interrupted(
    owner_client: Client, alice: Any, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.CHAT_STALE_AFTER_SECONDS = 30
    conversation = conversation_with_turn(alice, status="running")
    turn = conversation.turns.get()
    Turn.objects.filter(pk=turn.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31), final_text="")
    PanelAnswer.objects.filter(turn=turn).update(status="streaming", content="half an answer")
    body = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'data-turn-status="interrupted"' in body
    turn.refresh_from_db()
    assert turn.status == "interrupted" and turn.finished_at is not None
    answer = turn.answers.get()
    assert answer.content == "half an answer" and answer.status == "cancelled"
    assert "half an answer" in body


def test_a_fresh_running_turn_is_left_running(owner_client: Client, alice: Any) -> None:
    from django.utils import timezone

    conversation = conversation_with_turn(alice, status="running")
    Turn.objects.filter(conversation=conversation).update(heartbeat_at=timezone.now())
    body = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'data-turn-status="running"' in body
    # Stop stands where Send was while the turn runs.
    assert 'id="send-button" class="primary" hidden' in body
    assert re.search(r'id="stop-button" class="stop" aria-keyshortcuts="Escape">Stop<', body)


def test_older_turns_start_with_their_columns_collapsed(owner_client: Client, alice: Any) -> None:
    conversation = conversation_with_turn(alice)
    second = conversation.turns.get()
    second.pk = None
    second.position = 2
    second.save()
    body = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    # Done turns show prompt and fused answer: their panels are folded to the strip, the analysis too.
    details = re.findall(r'<details class="panel-answers" id="turn-\d+-panel"( open)?>', body)
    assert details == ["", ""]
    assert len(re.findall(r'<details class="analysis-fold" id="turn-\d+-analysis-fold">', body)) == 2
