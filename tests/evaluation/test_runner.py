"""The runner against a loopback OpenRouter: every answer and verdict is saved once; an interrupted run
resumes without repeating a finished call (counted at the fake's seam); the budget cap stops it cleanly; a
cancel made through the database stops it."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from apps.evaluation import services
from apps.evaluation.models import Answer, EvalRun, Verdict
from apps.evaluation.runner import ANSWER, VERDICT, EvalRunner, Slots
from apps.providers.catalog import reset_catalog
from apps.providers.registry import reset_gateway
from tests.fakes.upstream import FakeUpstream, ModelScript, RecordedRequest

TASKS = 4
CRITERIA = 3


def _tasks_text() -> str:
    lines = []
    for t in range(1, TASKS + 1):
        criteria = [
            {"id": f"c{c}", "weight": 1 if c < CRITERIA else -1, "requirement": f"Point {c}"}
            for c in range(1, CRITERIA + 1)
        ]
        rubric = {"sections": [{"id": "facts", "title": "Facts", "criteria": criteria}]}
        lines.append(
            json.dumps(
                {
                    "id": f"t{t}",
                    "domain": "d",
                    "problem": f"Problem number {t}?",
                    "answer": json.dumps(rubric),
                }
            )
        )
    return "\n".join(lines)


def _grader(request: RecordedRequest) -> ModelScript:
    text = request.body["messages"][-1]["content"]
    met = "Criterion c1 " in text
    return ModelScript(
        text=json.dumps({"verdict": "MET" if met else "UNMET", "reason": "Checked."}),
        cost=0.001,
        latency_s=0.02,
    )


@pytest.fixture
def upstream(settings: Any, fake_upstream: FakeUpstream) -> FakeUpstream:
    settings.OPENROUTER_API_KEY = "k"
    settings.OPENROUTER_BASE_URL = fake_upstream.base_url
    settings.PROVIDER_MAX_RETRIES = 0
    reset_gateway()
    reset_catalog()
    fake_upstream.script("fake/answerer", ModelScript(text="An answer.", cost=0.01))
    fake_upstream.script("fake/grader", _grader)
    return fake_upstream


def _create(*, concurrency: int = 2, budget: float | None = None) -> EvalRun:
    owner = User.objects.create_user("runner")
    task_set = services.taskset_import(owner=owner, name="set", text=_tasks_text())
    plan = services.run_plan(
        owner=owner,
        task_set=task_set,
        contender_specs=["model:fake/answerer", "preset:demo"],
        grader="fake/grader",
        concurrency=concurrency,
        budget=budget,
    )
    return services.run_create(owner=owner, plan=plan)


def _key(request: RecordedRequest) -> tuple[str, str, str, str]:
    """(model, task, criterion, graded response) a request was for, read from its prompt."""
    text = request.body["messages"][-1]["content"]
    task = re.search(r"Problem number (\d+)", text)
    criterion = re.search(r"Criterion (c\d+) ", text)
    response = re.search(r"<<<RESPONSE>>>\n(.*)\n<<<END RESPONSE>>>", text, re.S)
    return (
        str(request.model),
        task.group(1) if task else "",
        criterion.group(1) if criterion else "",
        response.group(1) if response else "",
    )


def _saved(run_id: int) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    answers = set(Answer.objects.filter(run_id=run_id, status="done").values_list("contender_id", "task_id"))
    verdicts = set(Verdict.objects.filter(answer__run_id=run_id).values_list("answer_id", "criterion_id"))
    return answers, verdicts


@pytest.mark.django_db(transaction=True)
async def test_a_run_answers_and_grades_everything_once_and_ends_done(
    upstream: FakeUpstream, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0
    run = await sync_to_async(_create)()

    await EvalRunner(run_id=run.pk).run()

    await sync_to_async(run.refresh_from_db)()
    assert run.status == EvalRun.Status.DONE
    answers, verdicts = await sync_to_async(_saved)(run.pk)
    assert len(answers) == 2 * TASKS and len(verdicts) == 2 * TASKS * CRITERIA
    keys = [_key(r) for r in upstream.completions()]
    # The single model's answers (the demo panel is offline), then every verdict of both contenders.
    assert len(keys) == len(set(keys)) == TASKS + 2 * TASKS * CRITERIA


@pytest.mark.django_db(transaction=True)
async def test_an_interrupted_run_resumes_without_repeating_a_finished_answer_or_verdict(
    upstream: FakeUpstream, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0.002
    run = await sync_to_async(_create)(concurrency=2)
    first = EvalRunner(run_id=run.pk)
    first.task = asyncio.create_task(first.run())
    for _ in range(400):
        await asyncio.sleep(0.02)
        if await Verdict.objects.filter(answer__run_id=run.pk).acount() >= 5:
            break
    first.task.cancel()  # the process goes away mid-run
    with pytest.raises(asyncio.CancelledError):
        await first.task
    await sync_to_async(run.refresh_from_db)()
    assert run.status == EvalRun.Status.INTERRUPTED
    answers_before, verdicts_before = await sync_to_async(_saved)(run.pk)
    assert 0 < len(verdicts_before) < 2 * TASKS * CRITERIA
    saved_keys = await sync_to_async(_saved_keys)(run.pk)
    calls_before = len(upstream.completions())

    await sync_to_async(services.run_reopen)(run=run)
    await EvalRunner(run_id=run.pk).run()

    await sync_to_async(run.refresh_from_db)()
    assert run.status == EvalRun.Status.DONE
    answers, verdicts = await sync_to_async(_saved)(run.pk)
    assert answers >= answers_before and verdicts >= verdicts_before
    assert len(verdicts) == 2 * TASKS * CRITERIA
    after = [_key(r) for r in upstream.completions()[calls_before:]]
    assert not set(after) & saved_keys, "a finished answer or verdict was asked for again"
    missing_answers = TASKS - sum(1 for key in saved_keys if key[0] == "fake/answerer")
    missing_verdicts = 2 * TASKS * CRITERIA - len(verdicts_before)
    assert len(after) == missing_answers + missing_verdicts


def _spent(run_id: int) -> float:
    answers = Answer.objects.filter(run_id=run_id).values_list("cost", flat=True)
    verdicts = Verdict.objects.filter(answer__run_id=run_id).values_list("cost", flat=True)
    return sum(cost or 0.0 for cost in [*answers, *verdicts])


def _saved_keys(run_id: int) -> set[tuple[str, str, str, str]]:
    keys = set()
    for answer in Answer.objects.filter(run_id=run_id, status="done").select_related("contender", "task"):
        task = answer.task.external_id.removeprefix("t")
        if answer.contender.kind == "model":
            keys.add(("fake/answerer", task, "", ""))
        for verdict in answer.verdicts.select_related("criterion"):
            keys.add(("fake/grader", task, verdict.criterion.external_id, answer.text))
    return keys


@pytest.mark.django_db(transaction=True)
async def test_the_budget_cap_stops_the_run_before_spending_past_it(
    upstream: FakeUpstream, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0
    run = await sync_to_async(_create)(concurrency=1, budget=0.03)

    await EvalRunner(run_id=run.pk).run()

    await sync_to_async(run.refresh_from_db)()
    assert run.status == EvalRun.Status.BUDGET
    assert "budget" in run.error_message
    spent = await sync_to_async(_spent)(run.pk)
    assert 0 < spent <= 0.03 + 1e-9
    assert await Verdict.objects.filter(answer__run=run).acount() < 2 * TASKS * CRITERIA


@pytest.mark.django_db(transaction=True)
async def test_a_cancel_written_to_the_database_stops_the_runner(
    upstream: FakeUpstream, settings: Any
) -> None:
    settings.DEMO_MODEL_DELAY = 0.002
    settings.EVALUATION_HEARTBEAT_SECONDS = 0.1
    run = await sync_to_async(_create)(concurrency=1)
    runner = EvalRunner(run_id=run.pk)
    runner.task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)

    assert await sync_to_async(services.run_cancel)(run=run)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner.task, timeout=5)

    await sync_to_async(run.refresh_from_db)()
    assert run.status == EvalRun.Status.CANCELLED
    assert await Verdict.objects.filter(answer__run=run).acount() < 2 * TASKS * CRITERIA


async def test_a_freed_slot_goes_to_a_waiting_answer_before_a_waiting_verdict() -> None:
    slots = Slots(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def call(kind: int, name: str) -> None:
        async with slots.held(kind):
            order.append(name)
            await gate.wait()

    first = asyncio.create_task(call(VERDICT, "verdict 1"))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(call(VERDICT, "verdict 2")),
        asyncio.create_task(call(ANSWER, "answer")),
    ]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *waiting)

    assert order == ["verdict 1", "answer", "verdict 2"]


async def test_a_call_cancelled_while_waiting_for_a_slot_gives_nothing_away() -> None:
    slots = Slots(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with slots.held(ANSWER):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert slots.free == 1 and not any(slots.waiting)


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_running_evaluation_stops_its_runner(upstream: FakeUpstream, settings: Any) -> None:
    settings.DEMO_MODEL_DELAY = 0.002
    settings.EVALUATION_HEARTBEAT_SECONDS = 0.1
    run = await sync_to_async(_create)(concurrency=1)
    runner = EvalRunner(run_id=run.pk)
    runner.task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)

    await sync_to_async(services.run_delete)(run=run)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner.task, timeout=5)
    assert not await EvalRun.objects.filter(pk=run.pk).aexists()
    assert not await Verdict.objects.filter(answer__run_id=run.pk).aexists()
