"""Web tools in the chatroom: a seat's tool calls show in its column, live and after a reload, and a
refused address is explained while the run goes on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.chat.models import PanelAnswer
from tests.chat.conftest import Room, panel_make, session_cookie, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest

pytestmark = pytest.mark.django_db(transaction=True)

METADATA_URL = "http://169.254.169.254/latest/meta-data/"


def reader(request: RecordedRequest) -> ModelScript:
    """Asks to read the cloud metadata address first; answers once it has the tool's reply."""
    messages = (request.body or {}).get("messages", [])
    if any(message.get("role") == "tool" for message in messages):
        return ModelScript(text="I could not read that page, so here is what I know.", comments=False)
    return ModelScript(
        text="Let me read it.",
        comments=False,
        tool_calls=[{"name": "web_fetch", "arguments": {"url": METADATA_URL}}],
    )


@pytest.fixture
def endpoint(endpoint: FakeUpstream, settings: Any) -> FakeUpstream:
    settings.WEB_FETCH = True
    settings.WEB_SEARCH_URL = ""
    endpoint.script("reader", reader)
    return endpoint


def tool_line(status: str) -> Any:
    def check(frame: dict[str, Any]) -> bool:
        fragment = frame.get("html", "")
        return frame["type"] == "html" and 'data-tool="web_fetch"' in fragment and status in fragment

    return check


async def test_a_refused_fetch_shows_in_the_column_and_the_seat_still_answers(
    room: Room, endpoint: FakeUpstream
) -> None:
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/reader"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "What is on that page?", "panel": panel.pk})

    running = await socket.receive_until(tool_line('data-tool-status="running"'))
    assert 'id="turn-' in running["html"] and "-seat-2-tools" in running["html"]
    assert "169.254.169.254/latest/meta-data/" in running["html"]
    refused = await socket.receive_until(tool_line('data-tool-status="failed"'))
    assert "refused" in refused["html"]
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert ended["status"] == "done"
    first, second = endpoint.requests_for("reader")
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["web_fetch"]
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool" and "refused" in tool_message["content"]
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=ended["turn"], seat=2)
    assert answer.status == "done" and answer.content.endswith("here is what I know.")
    assert [(call["name"], call["status"]) for call in answer.tool_calls] == [("web_fetch", "failed")]
    assert answer.sources == []


async def test_the_tool_calls_are_still_there_after_a_reload(room: Room, endpoint: FakeUpstream) -> None:
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/reader"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "What is on that page?", "panel": panel.pk})
    await socket.receive_until(turn_ended())
    await socket.close()

    def page() -> str:
        client = Client()
        client.cookies["sessionid"] = session_cookie(room.user).split("=", 1)[1]
        return client.get(f"/c/{room.conversation.pk}/").content.decode()

    html = await sync_to_async(page)()
    assert 'data-tool="web_fetch" data-tool-status="failed"' in html
    assert json.dumps(METADATA_URL)[1:-1] in html


async def test_a_nul_in_a_models_tool_arguments_is_stored_as_a_replacement_character(
    room: Room, endpoint: FakeUpstream
) -> None:
    # PostgreSQL's jsonb refuses NUL: untrusted text in the saved tool calls is made storable like the rest.
    def nul_reader(request: RecordedRequest) -> ModelScript:
        if any(message.get("role") == "tool" for message in request.body["messages"]):
            return ModelScript(text="Done.", comments=False)
        url = "http://docs.example\u0000.org/"
        return ModelScript(comments=False, tool_calls=[{"name": "web_fetch", "arguments": {"url": url}}])

    endpoint.script("reader", nul_reader)
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/reader"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Read it", "panel": panel.pk})
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert ended["status"] == "done"
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=ended["turn"], seat=2)
    (call,) = answer.tool_calls
    assert "\x00" not in json.dumps(answer.tool_calls, ensure_ascii=False)
    assert call["detail"] == "http://docs.example\ufffd.org/"
