"""Cancellation: closing the event stream or cancelling its consumer leaves no request running."""

from __future__ import annotations

import asyncio
import contextlib

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import FusionEvent
from tests.fusion.conftest import FakeClient, FakeGateway, Script, fusion_request


def other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_closing_the_stream_mid_panel_cancels_and_awaits_every_seat(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    never = asyncio.Event()
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(chunks=["first ", "never"], gate=never, gate_after=1))
    before = other_tasks()
    events = run_fusion(fusion_request(), gateway=gateway)

    async for event in events:
        if event.type == "seat.delta":
            break
    while fake.active < 3:  # every seat is in flight
        await asyncio.sleep(0)
    await events.aclose()

    assert other_tasks() == before
    assert fake.active == 0
    assert all(call.cancelled for call in fake.calls), [c.request.model for c in fake.calls]
    assert not fake.calls_for("fake/judge")


async def test_cancelling_the_consumer_during_the_judge_cancels_the_judge_call(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/judge", Script(gate=asyncio.Event()))
    before = other_tasks()
    judge_started = asyncio.Event()

    async def consume() -> None:
        async for event in run_fusion(fusion_request(), gateway=gateway):
            if event.type == "analysis.started":
                judge_started.set()

    task = asyncio.create_task(consume())
    await judge_started.wait()
    while not fake.calls_for("fake/judge"):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert task.cancelled()
    assert fake.calls_for("fake/judge")[0].cancelled
    assert fake.active == 0 and other_tasks() == before
    assert not fake.calls_for("fake/writer")


async def test_closing_the_stream_while_the_writer_streams_closes_the_writer_call(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/writer", Script(chunks=["a ", "b ", "c ", "d"], gate=asyncio.Event(), gate_after=2))
    events = run_fusion(fusion_request(), gateway=gateway)
    seen: list[FusionEvent] = []

    async for event in events:
        seen.append(event)
        if event.type == "final.delta":
            break
    await events.aclose()

    writer = fake.calls_for("fake/writer")[0]
    assert writer.closed or writer.cancelled
    assert writer.ended is not None and fake.active == 0
    assert [e.type for e in seen][-2:] == ["final.started", "final.delta"]


async def test_cancelling_the_consumer_while_seats_stream_leaves_no_task(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(chunks=["word "] * 1000, delay=0.001))
    before = other_tasks()
    deltas = 0

    async def consume() -> None:
        nonlocal deltas
        async for event in run_fusion(fusion_request(), gateway=gateway):
            deltas += event.type == "seat.delta"

    task = asyncio.create_task(consume())
    while deltas < 10:
        await asyncio.sleep(0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert other_tasks() == before
    assert [call.cancelled for call in fake.calls] == [True, True, True]
