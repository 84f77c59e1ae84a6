"""``POST /api/v1/responses``: the request and response shapes, the event sequence, fusion's progress events,
refusals and errors, on the ASGI app in process (the loopback upstream for plain models)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from tests.api.conftest import Caller, auth
from tests.api.test_bad_bodies import GROUPS, _unclean
from tests.fakes.upstream import FakeUpstream, ModelScript

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
FAILING_PANEL = {"id": "fusion", "analysis_models": ["vendor/x", "vendor/y"], "model": "vendor/judge"}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def sse(body: str) -> list[dict[str, Any]]:
    """The events of a Responses stream; each ``event:`` line must name its data's ``type``."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types with runs of the same type folded into one (deltas come in any number)."""
    folded: list[str] = []
    for event in events:
        if not folded or folded[-1] != event["type"]:
            folded.append(event["type"])
    return folded


async def post(api: httpx.AsyncClient, caller: Caller, **body: Any) -> httpx.Response:
    return await api.post("/responses", headers=auth(caller), json=body)


async def stream(api: httpx.AsyncClient, caller: Caller, **body: Any) -> list[dict[str, Any]]:
    response = await post(api, caller, stream=True, **body)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"] == "text/event-stream"
    events = sse(response.text)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def fusion_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event["type"].startswith("response.fusion_call.")]


# --- plain models ----------------------------------------------------------------------------------------


async def test_a_plain_model_answers_with_a_response_object_in_openais_shape(
    api: httpx.AsyncClient, alice: Caller
) -> None:
    response = await post(api, alice, model="demo/cedar", input="Tabs or spaces?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["status"] == "completed" and body["model"] == "demo/cedar" and body["error"] is None
    (message,) = body["output"]
    assert (
        message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    )
    (part,) = message["content"]
    assert part["type"] == "output_text" and part["text"] and part["annotations"] == []
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["cost"] == 0.0 and usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert body["fusion"] is None


async def test_a_plain_model_streams_openais_event_sequence(api: httpx.AsyncClient, alice: Caller) -> None:
    events = await stream(api, alice, model="demo/cedar", input="Tabs or spaces?")
    assert kinds(events) == TEXT_EVENTS
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    deltas = [event for event in events if event["type"] == "response.output_text.delta"]
    text = "".join(event["delta"] for event in deltas)
    done = next(event for event in events if event["type"] == "response.output_text.done")
    assert text and done["text"] == text
    assert completed["output"][0]["content"][0]["text"] == text
    item_id = completed["output"][0]["id"]
    assert {event["item_id"] for event in deltas} == {item_id}
    assert completed["usage"]["total_tokens"] > 0


async def test_input_messages_and_instructions_reach_the_model_in_order(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/plain", ModelScript(text="Fine."))
    response = await post(
        api,
        alice,
        model="vendor/plain",
        instructions="Answer briefly.",
        max_output_tokens=50,
        temperature=0.2,
        input=[
            {"role": "developer", "content": "Use metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "How tall is "},
                    {"type": "input_text", "text": "it?"},
                ],
            },
            # A previous response's output replayed as input, as SDK users do: the fusion item is dropped.
            {"type": "openrouter:fusion", "id": "fusion_1", "status": "completed", "responses": []},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Which one?", "annotations": []}],
            },
            {"type": "message", "role": "user", "content": "The tower."},
        ],
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "Fine."
    (sent,) = upstream.completions()
    assert [(m["role"], m["content"]) for m in sent.body["messages"]] == [
        ("system", "Answer briefly."),
        ("system", "Use metric units."),
        ("user", "How tall is it?"),
        ("assistant", "Which one?"),
        ("user", "The tower."),
    ]
    assert sent.body["max_tokens"] == 50 and sent.body["temperature"] == 0.2


async def test_a_json_schema_text_format_becomes_the_models_response_format(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/plain", ModelScript(text='{"ok": true}'))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    text = {"format": {"type": "json_schema", "name": "verdict", "schema": schema, "strict": True}}
    response = await post(api, alice, model="vendor/plain", input="Is it?", text=text)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == text
    (sent,) = upstream.completions()
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }


async def test_an_answer_cut_by_the_output_limit_is_incomplete(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/plain", ModelScript(text="One two three", finish_reason="length"))
    body = (await post(api, alice, model="vendor/plain", input="Count", max_output_tokens=3)).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    events = await stream(api, alice, model="vendor/plain", input="Count", max_output_tokens=3)
    assert events[-1]["type"] == "response.incomplete"


NOTE_TOOL = {
    "type": "function",
    "name": "save_note",
    "description": "Save a note.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


async def test_function_calls_go_back_to_the_caller_and_their_outputs_come_in(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script(
        "vendor/outer",
        ModelScript(tool_calls=[{"name": "save_note", "arguments": {"text": "hi"}, "id": "call_1"}]),
    )
    first = (
        await post(api, alice, model="vendor/outer", input="Note hi", tools=[NOTE_TOOL], tool_choice="auto")
    ).json()
    (call,) = first["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert call["call_id"] == "call_1" and call["name"] == "save_note"
    assert json.loads(call["arguments"]) == {"text": "hi"}
    (sent,) = upstream.completions()
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {k: NOTE_TOOL[k] for k in ("name", "description", "parameters")},
        }
    ]
    # The caller runs the function and sends the conversation back, the call as it came.
    upstream.script("vendor/outer", ModelScript(text="Saved."))
    second = await post(
        api,
        alice,
        model="vendor/outer",
        tools=[NOTE_TOOL],
        tool_choice={"type": "function", "name": "save_note"},
        input=[
            {"role": "user", "content": "Note hi"},
            call,
            {"type": "function_call_output", "call_id": "call_1", "output": "saved as #7"},
        ],
    )
    assert second.json()["output"][0]["content"][0]["text"] == "Saved."
    sent = upstream.completions()[-1]
    assert sent.body["messages"][1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "save_note", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "saved as #7"},
    ]
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "save_note"}}


async def test_a_function_call_streams_as_an_item_with_its_arguments(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script(
        "vendor/outer", ModelScript(tool_calls=[{"name": "save_note", "arguments": {"text": "hi"}}])
    )
    events = await stream(api, alice, model="vendor/outer", input="Note hi", tools=[NOTE_TOOL])
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, done = events[2], events[3], events[5]
    assert added["item"]["arguments"] == "" and added["item"]["status"] == "in_progress"
    assert delta["delta"] == done["item"]["arguments"] and done["item"]["status"] == "completed"
    assert events[-1]["response"]["output"] == [done["item"]]


# --- fusion ----------------------------------------------------------------------------------------------


async def test_the_fusion_slug_puts_the_fusion_item_and_result_on_the_response(
    api: httpx.AsyncClient, alice: Caller
) -> None:
    body = (await post(api, alice, model="fusion/demo", input=QUESTION)).json()
    assert body["status"] == "completed"
    fusion_item, message = body["output"]
    assert fusion_item["type"] == "openrouter:fusion" and fusion_item["status"] == "completed"
    assert fusion_item["id"].startswith("fusion_")
    assert [r["model"] for r in fusion_item["responses"]] == ["demo/atlas", "demo/birch", "demo/cedar"]
    assert set(fusion_item["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    assert "fused answer" in message["content"][0]["text"]
    assert body["fusion"]["status"] == "ok" and body["fusion"]["panel"] == "fusion/demo"
    assert body["fusion"]["responses"] == fusion_item["responses"]
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["cost"] == 0.0


async def test_the_fusion_slug_streams_openrouters_progress_events_in_order(
    api: httpx.AsyncClient, alice: Caller
) -> None:
    events = await stream(api, alice, model="fusion/demo", input=QUESTION)
    progress = fusion_events(events)
    types = [event["type"] for event in progress]
    assert types[0] == "response.fusion_call.in_progress"
    assert types.count("response.fusion_call.panel.added") == 3
    assert types.count("response.fusion_call.panel.completed") == 3
    assert types[-3:] == [
        "response.fusion_call.analysis.in_progress",
        "response.fusion_call.analysis.completed",
        "response.fusion_call.completed",
    ]
    assert "response.fusion_call.panel.delta" not in types, "panel text only when asked for"
    # Every fusion event names the fusion item, which comes first; the answer is the next item.
    added = [event for event in events if event["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "openrouter:fusion"),
        (1, "message"),
    ]
    item_id = added[0]["item"]["id"]
    assert {(event["item_id"], event["output_index"]) for event in progress} == {(item_id, 0)}
    completed = {e["seat"]: e for e in progress if e["type"] == "response.fusion_call.panel.completed"}
    assert [completed[seat]["model"] for seat in (1, 2, 3)] == ["demo/atlas", "demo/birch", "demo/cedar"]
    assert all(event["content"] for event in completed.values())
    assert progress[-3]["judge_model"] == "demo/judge"
    assert set(progress[-2]["analysis"]) >= {"consensus", "blind_spots"}
    done = [event for event in events if event["type"] == "response.output_item.done"]
    assert done[0]["item"]["status"] == "completed" and len(done[0]["item"]["responses"]) == 3
    # The fusion call is over before the answer starts.
    first_text = next(i for i, e in enumerate(events) if e["type"] == "response.output_text.delta")
    assert events.index(progress[-1]) < first_text
    final = events[-1]["response"]
    assert final["fusion"]["status"] == "ok" and [item["type"] for item in final["output"]] == [
        "openrouter:fusion",
        "message",
    ]


async def test_panel_text_and_reasoning_stream_when_asked_for(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/thinker", ModelScript(text="Postgres, mostly.", reasoning="Weighing both."))
    plugin = {"id": "fusion", "analysis_models": ["vendor/thinker", "demo/atlas"], "model": "demo/judge"}
    events = await stream(
        api, alice, model="fusion", input=QUESTION, plugins=[plugin], fusion={"stream_panel": True}
    )
    progress = fusion_events(events)
    for seat in (1, 2):
        deltas = [
            e for e in progress if e["type"] == "response.fusion_call.panel.delta" and e["seat"] == seat
        ]
        (completed,) = [
            e for e in progress if e["type"] == "response.fusion_call.panel.completed" and e["seat"] == seat
        ]
        assert deltas and "".join(e["delta"] for e in deltas) == completed["content"]
        offsets = [e["offset"] for e in deltas]
        assert offsets == [sum(len(e["delta"]) for e in deltas[:i]) for i in range(len(deltas))]
    reasoning = [e for e in progress if e["type"] == "response.fusion_call.panel.reasoning.delta"]
    assert "".join(e["delta"] for e in reasoning) == "Weighing both."
    assert {(e["seat"], e["model"]) for e in reasoning} == {(1, "vendor/thinker")}


async def test_a_failed_seat_is_reported_with_model_message_and_status_code(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    upstream.script("vendor/x", ModelScript(error_status=503, error_message="no capacity"))
    plugin = {"id": "fusion", "analysis_models": ["vendor/x", "demo/atlas"], "model": "demo/judge"}
    events = await stream(api, alice, model="fusion", input=QUESTION, plugins=[plugin])
    (failed,) = [e for e in events if e["type"] == "response.fusion_call.panel.failed"]
    assert failed["model"] == "vendor/x" and failed["seat"] == 1 and failed["status_code"] == 503
    assert "no capacity" in failed["message"]
    # The openai client ends a stream at any event with a top-level "error": a seat's failure is not one.
    assert "error" not in failed
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["fusion"]["failed_models"][0]["model"] == "vendor/x"


async def test_the_server_tool_and_the_plugin_on_a_plain_model(api: httpx.AsyncClient, alice: Caller) -> None:
    body = (
        await post(
            api,
            alice,
            model="demo/writer",
            input=QUESTION,
            tools=[{"type": "openrouter:fusion"}],
            tool_choice="required",
            plugins=[{"id": "fusion", "preset": "demo"}],
        )
    ).json()
    assert body["tools"] == [{"type": "openrouter:fusion"}] and body["tool_choice"] == "required"
    assert [item["type"] for item in body["output"]] == ["openrouter:fusion", "message"]
    assert body["fusion"]["demo"] is True and len(body["fusion"]["responses"]) == 3
    events = await stream(
        api,
        alice,
        model="demo/writer",
        input=QUESTION,
        tools=[{"type": "openrouter:fusion"}],
        tool_choice={"type": "openrouter:fusion"},
        plugins=[{"id": "fusion", "preset": "demo"}],
    )
    types = [event["type"] for event in events]
    assert "response.fusion_call.analysis.completed" in types and types[-1] == "response.completed"
    assert types.index("response.fusion_call.completed") < types.index("response.output_text.delta")


TOOL_WITH_SETTINGS = {
    "type": "openrouter:fusion",
    "parameters": {"analysis_models": ["demo/atlas", "demo/birch"], "model": "demo/judge"},
}


async def test_the_server_tools_parameters_configure_the_panel_as_the_plugin_does(
    api: httpx.AsyncClient, alice: Caller
) -> None:
    common = {"model": "demo/writer", "tools": [TOOL_WITH_SETTINGS], "tool_choice": "required"}
    response = (await post(api, alice, input=QUESTION, **common)).json()
    chat = (
        await api.post(
            "/chat/completions",
            headers=auth(alice),
            json={**common, "messages": [{"role": "user", "content": QUESTION}]},
        )
    ).json()
    for fusion in (response["fusion"], chat["fusion"]):
        assert [r["model"] for r in fusion["responses"]] == ["demo/atlas", "demo/birch"]
        assert fusion["panel"].endswith("+plugin")
    bad = {"type": "openrouter:fusion", "parameters": {"analysis_models": []}}
    for refused in (
        await post(api, alice, model="demo/writer", input="Hi", tools=[bad]),
        await api.post(
            "/chat/completions",
            headers=auth(alice),
            json={"model": "demo/writer", "messages": [{"role": "user", "content": "Hi"}], "tools": [bad]},
        ),
    ):
        assert refused.status_code == 400
        assert refused.json()["error"]["param"].startswith("tools.0")


async def test_a_failed_fusion_call_of_the_server_tool_is_a_failed_item_and_the_model_goes_on(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    for model in ("vendor/x", "vendor/y"):
        upstream.script(model, ModelScript(error_status=503, error_message="no capacity"))
    events = await stream(
        api,
        alice,
        model="demo/writer",
        input=QUESTION,
        tools=[{"type": "openrouter:fusion"}],
        tool_choice="required",
        plugins=[FAILING_PANEL],
    )
    final = events[-1]["response"]
    assert final["status"] == "completed"
    fusion_item, message = final["output"]
    assert fusion_item["status"] == "failed" and fusion_item["failure_reason"] == "all_panels_failed"
    assert message["content"][0]["text"]
    types = [event["type"] for event in events]
    assert types.count("response.fusion_call.panel.failed") == 2
    assert types.index("response.fusion_call.completed") < types.index("response.output_text.delta")


# --- refusals and errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "Hi"}, "model", "Field required"),
        ({"model": "demo/cedar"}, "input", "Field required"),
        ({"model": "demo/cedar", "input": []}, "input", "no message"),
        ({"model": "demo/cedar", "input": ""}, "input", "empty"),
        (
            {
                "model": "demo/cedar",
                "input": [{"type": "reasoning", "summary": []}],
            },
            "input.0.type",
            "only message",
        ),
        (
            {"model": "demo/cedar", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input.0.content",
            "only text parts",
        ),
        (
            {"model": "demo/cedar", "input": "Hi", "previous_response_id": "resp_1"},
            None,
            "whole conversation",
        ),
        ({"model": "demo/cedar", "input": "Hi", "background": True}, None, "background"),
        ({"model": "demo/cedar", "input": "Hi", "tools": [{"type": "function"}]}, "tools.0", "needs 'name'"),
        (
            {"model": "demo/cedar", "input": [{"type": "function_call", "call_id": "c1", "name": "f"}]},
            "input.0",
            "needs arguments",
        ),
        ({"model": "demo/cedar", "input": "Hi", "tools": [{"type": "web_search"}]}, "tools.0", "unsupported"),
        (
            {"model": "demo/cedar", "input": "Hi", "fusion": {"stream_pannel": True}},
            "fusion.stream_pannel",
            "",
        ),
        ({"model": "demo/cedar", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens", ""),
    ],
)
async def test_a_request_this_server_cannot_serve_is_refused_saying_why(
    api: httpx.AsyncClient, alice: Caller, body: dict[str, Any], param: str | None, words: str
) -> None:
    response = await api.post("/responses", headers=auth(alice), json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


async def test_errors_have_the_shape_and_status_of_chat_completions(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    assert (await api.post("/responses", json={"model": "demo/cedar", "input": "Hi"})).status_code == 401
    missing = await post(api, alice, model="fusion/nope", input="Hi")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    for model in ("vendor/x", "vendor/y"):
        upstream.script(model, ModelScript(error_status=503, error_message="no capacity"))
    failed = await post(api, alice, model="fusion", input="Hi", plugins=[FAILING_PANEL])
    assert failed.status_code == 502
    assert failed.json()["error"]["failure_reason"] == "all_panels_failed"
    chat = await api.post(
        "/chat/completions",
        headers=auth(alice),
        json={"model": "fusion", "messages": [{"role": "user", "content": "Hi"}], "plugins": [FAILING_PANEL]},
    )
    assert chat.status_code == 502 and set(chat.json()["error"]) == set(failed.json()["error"])


async def test_a_failure_after_the_stream_started_is_an_error_event_then_response_failed(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream
) -> None:
    for model in ("vendor/x", "vendor/y"):
        upstream.script(model, ModelScript(error_status=503, error_message="no capacity"))
    events = await stream(api, alice, model="fusion", input="Hi", plugins=[FAILING_PANEL])
    error, failed = events[-2:]
    assert error["type"] == "error" and error["code"] == "all_panels_failed"
    assert error["failure_reason"] == "all_panels_failed" and error["message"]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "all_panels_failed"


# The body rules are the chat endpoint's own (one decoder): a sample of its corpus, where the field names do
# not matter, is refused here the same way.
BODY_SAMPLE = [
    case
    for group in ("encodings", "nul-bytes", "duplicate-keys", "content-types", "numbers")
    for case in GROUPS[group]
]


async def test_bodies_are_decoded_by_the_same_rules_as_chat_completions(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream, settings: Any
) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    problems = []
    for case in BODY_SAMPLE:
        headers = auth(alice)
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        response = await api.post("/responses", headers=headers, content=case.body)
        unclean = _unclean(dataclasses.replace(case, param=None), response)
        if unclean is not None:
            problems.append(f"{case.id}: {unclean}")
    assert BODY_SAMPLE and not problems, "\n".join(problems)
    assert upstream.requests == []


# --- following the panel in chat completions -------------------------------------------------------------


async def test_chat_completions_carry_panel_deltas_only_when_asked(
    api: httpx.AsyncClient, alice: Caller
) -> None:
    async def progress_of(**extra: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        body = {"model": "fusion/demo", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
        response = await api.post("/chat/completions", headers=auth(alice), json={**body, **extra})
        chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        return [c["fusion_progress"] for c in chunks if "fusion_progress" in c], chunks[-1]

    lean, _ = await progress_of()
    assert not [p for p in lean if p["type"] in ("seat.delta", "seat.reasoning")]
    full, last = await progress_of(fusion={"stream_panel": True})
    for answer, seat in zip(last["fusion"]["responses"], (1, 2, 3), strict=True):
        deltas = [p for p in full if p["type"] == "seat.delta" and p["seat"] == seat]
        assert {p["model"] for p in deltas} == {answer["model"]}
        assert "".join(p["text"] for p in deltas) == answer["content"]
        assert [p["offset"] for p in deltas] == [
            sum(len(p["text"]) for p in deltas[:i]) for i in range(len(deltas))
        ]
    # Everything else is reported as before.
    assert [p["type"] for p in full if p["type"] not in ("seat.delta", "seat.reasoning")] == [
        p["type"] for p in lean
    ]
