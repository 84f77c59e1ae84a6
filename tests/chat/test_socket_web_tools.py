"""Web tools in the chatroom: a seat's tool calls show in its column, live and after a reload, and a
refused address is explained while the run goes on."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.chat.models import PanelAnswer
from apps.fusion.schemas import RunDone, SeatStarted, SeatToolCall, SeatToolResult, Totals
from tests.chat.conftest import EventFeed, Room, panel_make, recording, session_cookie, turn_ended
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
    """A frame the page swaps in (an ``html`` frame, or a snapshot) showing the fetch with this status."""

    def check(frame: dict[str, Any]) -> bool:
        fragment = frame.get("html", "")
        return (
            frame["type"] in ("html", "snapshot")
            and 'data-tool="web_fetch"' in fragment
            and status in fragment
        )

    return check


async def test_a_refused_fetch_shows_in_the_column_and_the_seat_still_answers(
    room: Room, endpoint: FakeUpstream
) -> None:
    # Both of the seat's replies wait for the test: the first (which asks for the fetch) until the turn's
    # first snapshot is out, which so cannot show the call yet; the second (its answer after the tool's
    # reply) until the refusal has shown, while the run is certainly still going.
    asking, answering = threading.Event(), threading.Event()

    def held_reader(request: RecordedRequest) -> ModelScript:
        script = reader(request)
        return dataclasses.replace(script, holds={0: asking if script.tool_calls else answering})

    endpoint.script("reader", held_reader)
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/reader"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "What is on that page?", "panel": panel.pk})
    started = await socket.receive_until(lambda frame: frame["type"] == "snapshot")
    assert started["status"] == "running" and 'data-tool="web_fetch"' not in started["html"]
    asking.set()

    # The call and its refusal come within one window of frames: the page shows the line as refused at once
    # (that a line shows running until its result comes is shown step by step below).
    refused = await socket.receive_until(tool_line('data-tool-status="failed"'))
    assert refused["status"] == "running", "shown live, while the seat is still to answer"
    assert 'id="turn-' in refused["html"] and "-seat-2-tools" in refused["html"]
    assert "169.254.169.254/latest/meta-data/" in refused["html"] and "refused" in refused["html"]
    answering.set()
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


async def test_a_tool_line_shows_running_until_its_result_then_the_result(room: Room) -> None:
    # Fed step by step, each step waited for: the running line is a frame of its own, not a race with the
    # engine (which refuses an address at once).
    feed = EventFeed()
    turn, _recorder, socket, _snapshot = await recording(room, feed)
    feed.put(SeatStarted(seat=2, model="demo/birch"))
    await socket.receive_until(lambda f: f["type"] == "html" and 'data-seat="2"' in f["html"])

    feed.put(SeatToolCall(seat=2, call_id="c1", name="web_fetch", detail=METADATA_URL))
    running = await socket.receive()
    assert tool_line('data-tool-status="running"')(running) and running["type"] == "html"
    # Only the seat's tool list is swapped, not its column, whose text may be streaming in.
    assert f'id="turn-{turn.pk}-seat-2-tools"' in running["html"]
    assert f'id="turn-{turn.pk}-seat-2-text"' not in running["html"]
    assert METADATA_URL in running["html"] and "Reading" in running["html"]

    refusal = "refused: the address is a cloud metadata endpoint"
    feed.put(SeatToolResult(seat=2, call_id="c1", name="web_fetch", ok=False, detail=refusal))
    failed = await socket.receive()
    assert tool_line('data-tool-status="failed"')(failed) and failed["type"] == "html"
    assert 'data-tool-status="running"' not in failed["html"] and refusal in failed["html"]

    feed.put(RunDone(totals=Totals()))
    await socket.receive_until(turn_ended(turn.pk))
    await socket.close()


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
