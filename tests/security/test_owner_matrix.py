"""User B against user A's objects over HTTP, the WebSocket and the API: every attempt is refused, A's data is
unchanged and none of it reaches B (SECURITY.md, "Who may see what").

A owns a conversation (a finished turn and a running one), a share link, a saved panel and an API key; B
has a conversation, a panel and a key of B's own. Each attempt runs as B; afterwards A's rows and every
table's row count must be what they were, and B's response must not contain any of A's texts.

A new view that takes an object id needs an entry in ``HTTP_ATTEMPTS``:
``test_every_url_taking_an_object_id_is_in_the_matrix`` fails until it has one.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey
from apps.api.ratelimit import limiter
from apps.chat.models import Conversation, PanelAnswer, ShareLink, Turn
from apps.chat.services import conversation_create, share_link_create
from apps.comparisons.models import BaselineChoice, Comparison
from apps.panels.models import Panel, PanelMember
from apps.providers.registry import reset_gateway
from tests.chat.conftest import Socket, session_cookie, socket_open

# A's texts: none of them may appear in anything B gets back. Letters, digits and underscores only, so HTML
# escaping cannot hide one.
A_TITLE = "Alice_title_q7Zx"
A_PROMPT = "Alice_prompt_k2Wv"
A_ANSWER = "Alice_answer_m9Lt"
A_FINAL = "Alice_final_p4Rn"
A_RUNNING_PROMPT = "Alice_running_prompt_h5Jd"
A_PANEL_NAME = "Alice_panel_c8Qs"
A_PANEL_SLUG = "alice-panel"  # B may guess a slug: error messages may repeat it back, so it is no secret
A_KEY_NAME = "Alice_key_b3Fy"
A_USERNAME = "alice_u6Te"
A_BASELINE = "Alice_baseline_v6Gk"
B_PANEL_SLUG = "bob-panel"

DEMO_SNAPSHOT = {
    "name": "Demo (offline)",
    "judge": "demo/judge",
    "writer": "demo/writer",
    "seats": [{"seat": 1, "model": "demo/atlas", "name": "Atlas (demo)", "is_demo": True}],
}


@dataclass(frozen=True)
class World:
    alice: User
    bob: User
    conversation: Conversation
    done_turn: Turn
    running_turn: Turn
    link: ShareLink
    token: str
    panel: Panel
    alice_key: ApiKey
    alice_raw_key: str
    bob_conversation: Conversation
    bob_raw_key: str

    @property
    def secrets(self) -> list[str]:
        return [
            A_TITLE,
            A_PROMPT,
            A_ANSWER,
            A_FINAL,
            A_RUNNING_PROMPT,
            A_PANEL_NAME,
            A_KEY_NAME,
            A_USERNAME,
            A_BASELINE,
            self.token,
            self.alice_raw_key,
            self.alice_key.prefix,
        ]


def _panel_make(owner: User, name: str, slug: str) -> Panel:
    panel = Panel.objects.create(
        owner=owner, name=name, slug=slug, judge_model="demo/judge", writer_model="demo/writer"
    )
    PanelMember.objects.create(panel=panel, position=1, model_id="demo/atlas")
    PanelMember.objects.create(panel=panel, position=2, model_id="demo/birch", system_prompt=A_PROMPT)
    return panel


def world_make() -> World:
    # No passwords: clients log in with force_login, and hashing one would be the slowest part of a test.
    alice = User.objects.create_user(A_USERNAME)
    bob = User.objects.create_user("bob_matrix")
    conversation = conversation_create(owner=alice, title=A_TITLE)
    panel = _panel_make(alice, A_PANEL_NAME, A_PANEL_SLUG)
    done_turn = Turn.objects.create(
        conversation=conversation,
        position=1,
        prompt=A_PROMPT,
        panel_snapshot={**DEMO_SNAPSHOT, "name": A_PANEL_NAME},
        status=Turn.Status.DONE,
        phase="finished",
        final_text=A_FINAL,
        cost=0.0,
    )
    PanelAnswer.objects.create(turn=done_turn, seat=1, model_id="demo/atlas", content=A_ANSWER, status="done")
    # Running, with a fresh heartbeat: a live run as far as anyone loading it can tell.
    running_turn = Turn.objects.create(
        conversation=conversation,
        position=2,
        prompt=A_RUNNING_PROMPT,
        panel_snapshot=DEMO_SNAPSHOT,
        status=Turn.Status.RUNNING,
        phase="panel",
        heartbeat_at=timezone.now(),
    )
    link, token = share_link_create(conversation=conversation)
    alice_key, alice_raw_key = api_key_create(user=alice, name=A_KEY_NAME)
    # A's blind comparison on the finished turn, not voted yet, and A's option for A's panel.
    Comparison.objects.create(
        owner=alice,
        turn=done_turn,
        panel=panel,
        panel_name=A_PANEL_NAME,
        model_id="demo/cedar",
        baseline_is_a=True,
        status=Comparison.Status.DONE,
        text=A_BASELINE,
    )
    BaselineChoice.objects.create(user=alice, panel=panel, enabled=True)
    _panel_make(bob, "Bob's panel", B_PANEL_SLUG)
    _bob_key, bob_raw_key = api_key_create(user=bob, name="Bob's key")
    return World(
        alice=alice,
        bob=bob,
        conversation=conversation,
        done_turn=done_turn,
        running_turn=running_turn,
        link=link,
        token=token,
        panel=panel,
        alice_key=alice_key,
        alice_raw_key=alice_raw_key,
        bob_conversation=conversation_create(owner=bob, title="Bob's conversation"),
        bob_raw_key=bob_raw_key,
    )


def database_state(world: World) -> dict[str, Any]:
    """A's rows, field by field, and every table's row count (so nothing was added for B either)."""
    alice = world.alice
    return {
        "conversations": list(
            Conversation.objects.filter(owner=alice).order_by("pk").values("pk", "title", "updated_at")
        ),
        "turns": list(
            Turn.objects.filter(conversation__owner=alice)
            .order_by("pk")
            .values(
                "pk", "status", "prompt", "final_text", "error_message", "finished_at", "version", "shown"
            )
        ),
        "answers": list(
            PanelAnswer.objects.filter(turn__conversation__owner=alice)
            .order_by("pk")
            .values("pk", "content", "status")
        ),
        "links": list(
            ShareLink.objects.filter(conversation__owner=alice).order_by("pk").values("pk", "revoked_at")
        ),
        "panels": list(
            Panel.objects.filter(owner=alice)
            .order_by("pk")
            .values("pk", "name", "slug", "judge_model", "writer_model", "options")
        ),
        "members": list(
            PanelMember.objects.filter(panel__owner=alice)
            .order_by("pk")
            .values("pk", "model_id", "position", "system_prompt")
        ),
        "keys": list(ApiKey.objects.filter(user=alice).order_by("pk").values("pk", "name", "revoked_at")),
        "comparisons": list(
            Comparison.objects.filter(owner=alice).order_by("pk").values("pk", "vote", "voted_at", "text")
        ),
        "baseline_choices": list(
            BaselineChoice.objects.filter(user=alice).order_by("pk").values("pk", "enabled", "model_id")
        ),
        "counts": {
            model.__name__: model.objects.count()
            for model in (
                Conversation,
                Turn,
                PanelAnswer,
                ShareLink,
                Panel,
                PanelMember,
                ApiKey,
                User,
                Comparison,
                BaselineChoice,
            )
        },
    }


def assert_nothing_of_alices(world: World, text: str) -> None:
    leaked = [secret for secret in world.secrets if secret in text]
    assert not leaked, f"B's response shows A's data {leaked}:\n{text[:2000]}"


@pytest.fixture(autouse=True)
def _offline(settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    settings.DEMO_MODEL_DELAY = 0
    settings.CHAT_FLUSH_SECONDS = 0.01


# --- HTTP: the pages and actions of the chatroom, panels and API keys ------------------------------------


def _no_args(world: World) -> list[Any]:
    return []


def _no_data(world: World) -> dict[str, Any]:
    return {}


def _alices_conversation(world: World) -> list[Any]:
    return [world.conversation.pk]


def _alices_panel(world: World) -> list[Any]:
    return [world.panel.pk]


def _alices_comparison(world: World) -> int:
    return Comparison.objects.get(turn=world.done_turn).pk


@dataclass(frozen=True)
class HttpAttempt:
    """B requests ``url_name`` with ``args(world)`` (and posts ``data(world)``); expects ``status`` and,
    when given, ``says`` in the response."""

    url_name: str
    method: Literal["get", "post"]
    args: Callable[[World], list[Any]] = _no_args
    data: Callable[[World], dict[str, Any]] = _no_data
    status: int = 404
    says: str = ""
    label: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.url_name}" + (f" ({self.label})" if self.label else "")


HTMX = {"HX-Request": "true"}
NOT_YOURS = "That panel does not exist (or is not yours). Pick another one."

HTTP_ATTEMPTS = [
    # The chatroom
    HttpAttempt("chat:home", "get", status=200, label="sidebar and panel chooser"),
    HttpAttempt("chat:conversation", "get", _alices_conversation),
    HttpAttempt("chat:sidebar_item", "get", _alices_conversation),
    HttpAttempt("chat:rename", "get", _alices_conversation),
    HttpAttempt(
        "chat:rename", "post", _alices_conversation, lambda w: {"title": "Renamed by B"}, headers=HTMX
    ),
    HttpAttempt("chat:delete", "post", _alices_conversation, headers=HTMX),
    HttpAttempt(
        "chat:send",
        "post",
        _alices_conversation,
        lambda w: {"prompt": "B writes here", "panel": Panel.objects.get(owner=None, slug="demo").pk},
    ),
    HttpAttempt(
        "chat:send",
        "post",
        lambda w: [w.bob_conversation.pk],
        lambda w: {"prompt": "hello", "panel": w.panel.pk},
        status=400,
        says=NOT_YOURS,
        label="A's panel in B's conversation",
    ),
    HttpAttempt(
        "chat:new",
        "post",
        data=lambda w: {"prompt": "hello", "panel": w.panel.pk},
        status=400,
        says=NOT_YOURS,
        label="A's panel",
    ),
    HttpAttempt("chat:share_create", "post", _alices_conversation, headers=HTMX),
    HttpAttempt("chat:export", "get", lambda w: [w.conversation.pk, "md"], label="Markdown"),
    HttpAttempt("chat:export", "get", lambda w: [w.conversation.pk, "json"], label="JSON"),
    HttpAttempt(
        "chat:search",
        "get",
        data=lambda w: {"q": "Alice"},
        headers=HTMX,
        status=200,
        says="No conversation matches",
        label="A's words",
    ),
    HttpAttempt("chat:share_revoke", "post", lambda w: [w.conversation.pk, w.link.pk], headers=HTMX),
    HttpAttempt(
        "chat:share_revoke",
        "post",
        lambda w: [w.bob_conversation.pk, w.link.pk],
        headers=HTMX,
        label="A's link under B's conversation",
    ),
    # Panels
    HttpAttempt("panels:list", "get", status=200),
    HttpAttempt("panels:detail", "get", _alices_panel),
    HttpAttempt("panels:edit", "get", _alices_panel),
    HttpAttempt(
        "panels:edit",
        "post",
        _alices_panel,
        lambda w: {"name": "Taken over", "seat_model": ["demo/cedar"], "judge": "demo/judge", "save": "1"},
        label="save",
    ),
    HttpAttempt(
        "panels:edit",
        "post",
        _alices_panel,
        lambda w: {"name": "x", "seat_model": ["demo/atlas"], "add_model": "demo/cedar"},
        headers=HTMX,
        label="builder action",
    ),
    HttpAttempt("panels:search_edit", "get", _alices_panel, lambda w: {"q": "demo"}),
    HttpAttempt("panels:duplicate", "post", _alices_panel),
    HttpAttempt("panels:delete", "get", _alices_panel),
    HttpAttempt("panels:delete", "post", _alices_panel),
    HttpAttempt(
        "panels:estimate",
        "post",
        data=lambda w: {"panel": w.panel.pk, "prompt": "hello"},
        status=200,
        says="Pick a panel to see what a run would cost.",
        label="A's panel",
    ),
    # Blind comparisons
    HttpAttempt("comparisons:index", "get", status=200, says="No votes yet", label="win rates"),
    HttpAttempt(
        "comparisons:turn",
        "get",
        lambda w: [w.done_turn.pk],
        status=200,
        label="an empty slot, nothing of A's",
    ),
    HttpAttempt(
        "comparisons:vote", "post", lambda w: [_alices_comparison(w)], lambda w: {"vote": "a"}, headers=HTMX
    ),
    HttpAttempt(
        "comparisons:option", "get", data=lambda w: {"panel": w.panel.pk}, status=200, label="A's panel"
    ),
    HttpAttempt(
        "comparisons:option",
        "post",
        data=lambda w: {"panel": w.panel.pk, "baseline_enabled": "1"},
        headers=HTMX,
        status=422,
        says=NOT_YOURS,
        label="A's panel",
    ),
    # API keys
    HttpAttempt("api_keys", "get", status=200),
    HttpAttempt("api_key_revoke", "post", lambda w: [w.alice_key.pk]),
]


@pytest.fixture
def world(db: None) -> World:
    return world_make()


@pytest.mark.parametrize("attempt", HTTP_ATTEMPTS, ids=lambda attempt: attempt.id)
def test_b_is_refused_every_page_and_action_on_as_objects(world: World, attempt: HttpAttempt) -> None:
    before = database_state(world)
    client = Client()
    client.force_login(world.bob)
    url = reverse(attempt.url_name, args=attempt.args(world))
    data = attempt.data(world)
    if attempt.method == "get":
        response = client.get(url, data, headers=attempt.headers)
    else:
        response = client.post(url, data, headers=attempt.headers)
    body = response.content.decode()
    assert response.status_code == attempt.status, body[:2000]
    assert attempt.says in body
    assert_nothing_of_alices(world, body)
    assert database_state(world) == before


def _object_url_names() -> set[str]:
    """Every url name of the chatroom, panels and accounts that takes an object id (``<int:..._id>``)."""
    names = set()
    for module_name in ("apps.chat.urls", "apps.panels.urls", "apps.accounts.urls", "apps.comparisons.urls"):
        module = importlib.import_module(module_name)
        namespace = getattr(module, "app_name", "")
        for pattern in module.urlpatterns:
            assert isinstance(pattern, URLPattern)
            if any(name.endswith("_id") for name in pattern.pattern.converters):
                names.add(f"{namespace}:{pattern.name}" if namespace else str(pattern.name))
    return names


def test_every_url_taking_an_object_id_is_in_the_matrix() -> None:
    object_urls = _object_url_names()
    assert {"chat:conversation", "panels:detail", "api_key_revoke"} <= object_urls  # the scan finds them
    missing = object_urls - {attempt.url_name for attempt in HTTP_ATTEMPTS}
    assert not missing, f"add B's attempts on these to HTTP_ATTEMPTS: {sorted(missing)}"


def test_the_pages_b_may_open_list_only_bs_own_things(world: World) -> None:
    """The matrix's leak check can fail: the same pages show B's own conversation and panel."""
    client = Client()
    client.force_login(world.bob)
    assert "Bob&#x27;s conversation" in client.get(reverse("chat:home")).content.decode()
    assert "Bob&#x27;s panel" in client.get(reverse("panels:list")).content.decode()
    client.force_login(world.alice)
    alices_home = client.get(reverse("chat:home")).content.decode()
    assert A_TITLE in alices_home and A_PANEL_NAME in alices_home


# --- The WebSocket ------------------------------------------------------------------------------------------


@pytest.fixture
async def live_world(transactional_db: None) -> World:
    return await sync_to_async(world_make)()


@pytest.fixture
async def bob_cookie(live_world: World) -> str:
    return await sync_to_async(session_cookie)(live_world.bob)


async def _frames_after(socket: Socket, wait: float = 0.3) -> list[str]:
    texts = []
    while not await socket.communicator.receive_nothing(timeout=wait):
        texts.append(await socket.communicator.receive_from())
    return texts


@pytest.mark.django_db(transaction=True)
async def test_b_cannot_open_the_socket_of_as_conversation(live_world: World, bob_cookie: str) -> None:
    before = await sync_to_async(database_state)(live_world)
    socket, connected, _code = await socket_open(live_world.conversation.pk, cookie=bob_cookie)
    assert connected  # accepted, then closed with a code the page understands, before any data
    assert await socket.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}
    assert await socket.communicator.receive_nothing(timeout=0.1)
    assert await sync_to_async(database_state)(live_world) == before


@dataclass(frozen=True)
class SocketAttempt:
    """A frame B sends down B's own conversation's socket that names one of A's objects."""

    label: str
    frame: Callable[[World], dict[str, Any]]
    says: str


SOCKET_ATTEMPTS = [
    SocketAttempt(
        "send with A's panel",
        lambda w: {"type": "send", "prompt": "hello", "panel": w.panel.pk},
        NOT_YOURS,
    ),
    SocketAttempt(
        "cancel A's running turn",
        lambda w: {"type": "cancel", "turn": w.running_turn.pk},
        "There is no such turn to cancel.",
    ),
    SocketAttempt(
        "resync A's finished turn",
        lambda w: {"type": "resync", "turn": w.done_turn.pk},
        "There is no such turn in this conversation.",
    ),
    SocketAttempt(
        "resync A's running turn",
        lambda w: {"type": "resync", "turn": w.running_turn.pk},
        "There is no such turn in this conversation.",
    ),
    SocketAttempt(
        "regenerate A's turn",
        lambda w: {"type": "regenerate", "turn": w.done_turn.pk},
        "There is no such turn in this conversation.",
    ),
    SocketAttempt(
        "edit and resend A's turn",
        lambda w: {"type": "edit", "turn": w.done_turn.pk, "prompt": "B's words"},
        "There is no such turn in this conversation.",
    ),
    SocketAttempt(
        "retry A's failed seats",
        lambda w: {"type": "retry", "turn": w.done_turn.pk},
        "There is no such turn in this conversation.",
    ),
    SocketAttempt(
        "show another version of A's turn",
        lambda w: {"type": "version", "turn": w.done_turn.pk, "version": 1},
        "There is no such turn in this conversation.",
    ),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", SOCKET_ATTEMPTS, ids=lambda attempt: attempt.label)
async def test_b_cannot_reach_as_objects_through_bs_own_socket(
    live_world: World, bob_cookie: str, attempt: SocketAttempt
) -> None:
    before = await sync_to_async(database_state)(live_world)
    socket, connected, _code = await socket_open(live_world.bob_conversation.pk, cookie=bob_cookie)
    assert connected
    assert (await socket.receive())["type"] == "hello"
    await socket.send(attempt.frame(live_world))
    error = await socket.receive()
    assert error == {"type": "error", "message": attempt.says}
    later = await _frames_after(socket)
    await socket.close()
    assert later == []
    assert_nothing_of_alices(live_world, json.dumps(error))
    assert await sync_to_async(database_state)(live_world) == before


# --- The API ------------------------------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    from fusionroom.asgi import application

    limiter.reset()
    reset_gateway()
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api/v1") as client:
        yield client
    limiter.reset()
    reset_gateway()


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


@dataclass(frozen=True)
class ApiAttempt:
    """A chat-completions body with which B's key names A's panel."""

    label: str
    body: dict[str, Any]


PLUGIN = {"id": "fusion", "preset": A_PANEL_SLUG}
API_ATTEMPTS = [
    ApiAttempt("model fusion/<A's slug>", _chat(f"fusion/{A_PANEL_SLUG}")),
    ApiAttempt("model fusion/<A's slug>, streamed", _chat(f"fusion/{A_PANEL_SLUG}", stream=True)),
    ApiAttempt("model openrouter/fusion/<A's slug>", _chat(f"openrouter/fusion/{A_PANEL_SLUG}")),
    ApiAttempt(
        "A's slug with the plugin disabled",
        _chat(f"fusion/{A_PANEL_SLUG}", plugins=[{"id": "fusion", "enabled": False}]),
    ),
    ApiAttempt("the plugin's preset", _chat("fusion", plugins=[PLUGIN])),
    ApiAttempt("the server tool's preset", _chat("demo/atlas", tools=[{"type": "fusion"}], plugins=[PLUGIN])),
    ApiAttempt("the plugin on a plain model", _chat("demo/atlas", plugins=[PLUGIN], stream=True)),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", API_ATTEMPTS, ids=lambda attempt: attempt.label)
async def test_bs_key_cannot_run_as_panel(
    live_world: World, api: httpx.AsyncClient, attempt: ApiAttempt
) -> None:
    before = await sync_to_async(database_state)(live_world)
    headers = {"Authorization": f"Bearer {live_world.bob_raw_key}"}
    response = await api.post("/chat/completions", json=attempt.body, headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "model_not_found"
    assert_nothing_of_alices(live_world, response.text)
    assert await sync_to_async(database_state)(live_world) == before


@pytest.mark.django_db(transaction=True)
async def test_bs_model_list_shows_bs_panels_and_none_of_as(
    live_world: World, api: httpx.AsyncClient
) -> None:
    before = await sync_to_async(database_state)(live_world)
    response = await api.get("/models", headers={"Authorization": f"Bearer {live_world.bob_raw_key}"})
    assert response.status_code == 200
    ids = [model["id"] for model in response.json()["data"]]
    assert f"fusion/{B_PANEL_SLUG}" in ids and "fusion/demo" in ids
    assert f"fusion/{A_PANEL_SLUG}" not in ids
    assert A_PANEL_SLUG not in response.text
    assert_nothing_of_alices(live_world, response.text)
    assert await sync_to_async(database_state)(live_world) == before
