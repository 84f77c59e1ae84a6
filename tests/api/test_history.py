"""API runs are saved as conversations of the key's owner, marked as made through the API."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.test import Client
from openai import AsyncOpenAI

from apps.chat.models import Conversation, Turn
from tests.api.conftest import Caller

QUESTION = "Should a small team run Kubernetes?"


async def test_a_fusion_run_is_saved_with_every_answer(oai: AsyncOpenAI, alice: Caller) -> None:
    completion = await oai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}]
    )
    fusion = completion.model_extra["fusion"]  # type: ignore[index]
    conversation = await Conversation.objects.aget()
    assert conversation.pk == fusion["conversation_id"]
    assert conversation.owner_id == alice.user.pk and conversation.source == "api"
    assert conversation.title == QUESTION
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.pk == fusion["turn_id"]
    assert turn.status == "done" and turn.prompt == QUESTION
    assert turn.final_text == completion.choices[0].message.content
    assert turn.analysis == fusion["analysis"]
    assert turn.panel_snapshot["slug"] == "demo"
    answers = await sync_to_async(
        lambda: list(turn.answers.order_by("seat").values("model_id", "status", "content"))
    )()
    assert [(a["model_id"], a["status"]) for a in answers] == [
        ("demo/atlas", "done"),
        ("demo/birch", "done"),
        ("demo/cedar", "done"),
    ]
    assert [a["content"] for a in answers] == [r["content"] for r in fusion["responses"]]


async def test_a_streamed_run_is_saved_too(oai: AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    turn = await Turn.objects.aget()
    assert turn.status == "done" and turn.final_text == text


async def test_the_run_shows_in_the_owners_chatroom(oai: AsyncOpenAI, alice: Caller) -> None:
    completion = await oai.chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}]
    )
    conversation_id = completion.model_extra["fusion"]["conversation_id"]  # type: ignore[index]

    def page(path: str) -> tuple[int, str]:
        client = Client()
        client.force_login(alice.user)
        response = client.get(path)
        return response.status_code, response.content.decode()

    status, body = await sync_to_async(page)(f"/c/{conversation_id}/")
    assert status == 200
    assert QUESTION in body
    # The history list marks it as made through the API.
    item = body[body.index(f'id="conversation-{conversation_id}"') :]
    item = item[: item.index("</li>")]
    assert 'title="Made through the API">API</span>' in item
