"""One real Daphne under concurrent writers: API fusions and chatroom turns at the same time, none lost.

Every API request and every socket writes (a conversation, a turn and its answers, flushes of streamed text,
the API key's last use), each from a database connection of its own. On SQLite this used to fail at three
requests at once with "database is locked" (HTTP 500). ``make bench`` measures the same at a larger size.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from apps.chat.models import Conversation, Turn
from apps.chat.services import conversation_create
from apps.panels.models import Panel
from tests.api.conftest import _caller
from tests.chat.conftest import session_cookie
from tests.live_server import LiveServer

API_RUNS = 16
CHAT_RUNS = 16
QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"


async def api_fusion(client: httpx.AsyncClient, key: str, stream: bool) -> str:
    body = {"model": "fusion/demo", "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    if not stream:
        response = await client.post("/chat/completions", json=body, headers=headers)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        return "" if response.json()["fusion"]["status"] == "ok" else response.text[:200]
    async with client.stream("POST", "/chat/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    return "" if lines and lines[-1] == "data: [DONE]" else f"stream ended without [DONE]: {lines[-1:]}"


async def chat_turn(server: LiveServer, cookie: str, conversation: int, panel: int) -> str:
    url = f"{server.ws_url}/ws/conversations/{conversation}/"
    async with connect(url, origin=Origin(server.url), additional_headers={"Cookie": cookie}) as ws:
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            return f"first frame {hello}"
        await ws.send(json.dumps({"type": "send", "prompt": QUESTION, "panel": panel}))
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "error":
                return f"error frame: {frame.get('message')}"
            if frame.get("type") in ("html", "snapshot") and frame.get("status") not in (None, "running"):
                return "" if frame["status"] == "done" else f"turn ended {frame['status']}"
    return "socket closed mid-turn"


@pytest.mark.timeout(180)
def test_api_fusions_and_chat_turns_at_once_all_complete(live_api: LiveServer) -> None:
    callers = [_caller(f"user{i}") for i in range(API_RUNS)]
    owner = callers[0].user
    cookie = session_cookie(owner)
    conversations = [conversation_create(owner=owner).pk for _ in range(CHAT_RUNS)]
    panel = Panel.objects.get(owner=None, slug="demo").pk

    async def everything() -> list[str]:
        limits = httpx.Limits(max_connections=API_RUNS)
        async with httpx.AsyncClient(base_url=live_api.api_url, timeout=120, limits=limits) as client:
            jobs: list[Any] = [
                api_fusion(client, caller.key, stream=i % 2 == 0) for i, caller in enumerate(callers)
            ]
            jobs += [chat_turn(live_api, cookie, cid, panel) for cid in conversations]
            return await asyncio.gather(*jobs)

    outcomes = asyncio.run(everything())

    assert [outcome for outcome in outcomes if outcome] == []
    assert Turn.objects.filter(status=Turn.Status.DONE).count() == API_RUNS + CHAT_RUNS
    assert Conversation.objects.filter(source="api").count() == API_RUNS
