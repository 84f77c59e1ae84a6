"""What the evaluation bench does with the database: import task sets, plan and create runs (with their cost
estimate), end stale runs, cancel, resume, share. Views and the ``evaluate`` command use it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.chat.share_tokens import share_token_hash, share_token_new
from apps.evaluation.contenders import (
    MODEL_MAX_TOKENS,
    TYPICAL_ANSWER_TOKENS,
    VERDICT_TOKENS,
    ContenderInvalid,
    ContenderPlan,
    answer_estimate,
    call_cost,
    contender_resolve,
    tokens_for,
)
from apps.evaluation.grading import DEMO_GRADER, GRADER_SYSTEM
from apps.evaluation.models import Contender, Criterion, EvalRun, EvalShareLink, Task, TaskSet
from apps.evaluation.tasksets import SAMPLE_NAME, TaskLine, sample_text, tasks_parse
from apps.providers.base import ProviderError
from apps.providers.registry import Gateway, gateway_from_settings

MAX_CONTENDERS = 8
MAX_CONCURRENCY = 32


class EvaluationInvalid(Exception):
    """Something the person must fix before a run can start; the message says what."""


# --- Task sets --------------------------------------------------------------------------------------------


def taskset_create(*, owner: Any, name: str, tasks: list[TaskLine], source: str) -> TaskSet:
    """Save parsed tasks as a new set, with one ``Criterion`` row per rubric criterion."""
    with transaction.atomic():
        task_set = TaskSet.objects.create(owner=owner, name=name[:120] or "Task set", source=source)
        rows = Task.objects.bulk_create(
            Task(
                task_set=task_set,
                position=index,
                external_id=line.id,
                domain=line.domain,
                problem=line.problem,
                rubric=line.answer.model_dump(),
            )
            for index, line in enumerate(tasks, start=1)
        )
        criteria = []
        for task, line in zip(rows, tasks, strict=True):
            position = 0
            for section in line.answer.sections:
                for criterion in section.criteria:
                    position += 1
                    criteria.append(
                        Criterion(
                            task=task,
                            position=position,
                            section_id=section.id,
                            section_title=section.title,
                            external_id=criterion.id,
                            weight=criterion.weight,
                            requirement=criterion.requirement,
                        )
                    )
        Criterion.objects.bulk_create(criteria)
    return task_set


def taskset_import(*, owner: Any, name: str, text: str) -> TaskSet:
    """Validate a JSONL text and save it; ``TaskSetInvalid`` (every bad line) and nothing saved otherwise."""
    return taskset_create(owner=owner, name=name, tasks=tasks_parse(text), source="import")


def taskset_sample_load(*, owner: Any) -> TaskSet:
    """The shipped sample set, for ``owner`` (one copy: loading it again returns the same set)."""
    existing = TaskSet.objects.filter(owner=owner, source="sample").first()
    if existing is not None:
        return existing
    return taskset_create(owner=owner, name=SAMPLE_NAME, tasks=tasks_parse(sample_text()), source="sample")


# --- Planning -------------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    task_set: TaskSet
    tasks: list[Task]
    contenders: list[ContenderPlan]
    grader: str
    grader_is_demo: bool
    concurrency: int
    budget: float | None
    limit: int | None
    seed: int
    estimate_low: float | None = None
    estimate_high: float | None = None
    # Per contender: (label, answers low, answers high, grading low, grading high); None: unknown price.
    breakdown: list[tuple[str, float | None, float | None, float | None, float | None]] = field(
        default_factory=list
    )

    @property
    def calls(self) -> int:
        return len(self.tasks) * len(self.contenders)


def tasks_pick(tasks: list[Task], *, limit: int | None, seed: int) -> list[Task]:
    """Every task, or a seeded sample of ``limit`` of them (the same seed picks the same tasks), in order."""
    if limit is None or limit >= len(tasks):
        return tasks
    chosen = random.Random(seed).sample(range(len(tasks)), limit)
    return [tasks[index] for index in sorted(chosen)]


def _sum(values: list[float | None]) -> float | None:
    return None if any(value is None for value in values) else sum(value or 0.0 for value in values)


def grading_estimate(
    *, gateway: Gateway, grader: str, problem: str, criteria: list[Criterion], answer_tokens: int
) -> float | None:
    if grader == DEMO_GRADER:
        return 0.0
    fixed = tokens_for(len(GRADER_SYSTEM) + len(problem) + 200) + answer_tokens
    costs = [
        call_cost(gateway, grader, fixed + tokens_for(len(c.requirement)), VERDICT_TOKENS) for c in criteria
    ]
    return _sum(costs)


def run_plan(
    *,
    owner: Any,
    task_set: TaskSet,
    contender_specs: list[str],
    grader: str,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 4,
    budget: float | None = None,
) -> RunPlan:
    """What a run would do and about what it would cost; ``EvaluationInvalid`` saying what is wrong."""
    gateway = gateway_from_settings()
    specs = [spec.strip() for spec in contender_specs if spec.strip()]
    if not specs:
        raise EvaluationInvalid("Choose at least one contender.")
    if len(specs) > MAX_CONTENDERS:
        raise EvaluationInvalid(f"At most {MAX_CONTENDERS} contenders.")
    if len(set(specs)) != len(specs):
        raise EvaluationInvalid("The same contender is listed twice.")
    contenders = []
    for spec in specs:
        try:
            contenders.append(contender_resolve(spec=spec, user=owner, gateway=gateway))
        except ContenderInvalid as error:
            raise EvaluationInvalid(str(error)) from None
    grader = grader.strip()
    if grader != DEMO_GRADER:
        try:
            gateway.client_for(grader)
        except ProviderError as error:
            raise EvaluationInvalid(f"Grader: {error}") from None
    if limit is not None and limit < 1:
        raise EvaluationInvalid("The number of tasks must be at least 1.")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise EvaluationInvalid(f"Concurrency must be between 1 and {MAX_CONCURRENCY}.")
    if budget is not None and budget <= 0:
        raise EvaluationInvalid("The budget must be more than $0.")
    all_tasks = list(task_set.tasks.prefetch_related("criteria"))
    tasks = tasks_pick(all_tasks, limit=limit, seed=seed)
    plan = RunPlan(
        task_set=task_set,
        tasks=tasks,
        contenders=contenders,
        grader=grader,
        grader_is_demo=grader == DEMO_GRADER,
        concurrency=concurrency,
        budget=budget,
        limit=limit,
        seed=seed,
    )
    _plan_estimate(plan, gateway)
    return plan


def _plan_estimate(plan: RunPlan, gateway: Gateway) -> None:
    lows: list[float | None] = []
    highs: list[float | None] = []
    for contender in plan.contenders:
        a_low: list[float | None] = []
        a_high: list[float | None] = []
        g_low: list[float | None] = []
        g_high: list[float | None] = []
        for task in plan.tasks:
            found = answer_estimate(
                plan_kind=contender.kind,
                ref=contender.ref,
                snapshot=contender.snapshot,
                prompt=task.problem,
                gateway=gateway,
            )
            a_low.append(found.low)
            a_high.append(found.high)
            criteria = list(task.criteria.all())
            for bucket, tokens in ((g_low, TYPICAL_ANSWER_TOKENS), (g_high, MODEL_MAX_TOKENS)):
                bucket.append(
                    grading_estimate(
                        gateway=gateway,
                        grader=plan.grader,
                        problem=task.problem,
                        criteria=criteria,
                        answer_tokens=tokens,
                    )
                )
        row = (contender.label, _sum(a_low), _sum(a_high), _sum(g_low), _sum(g_high))
        plan.breakdown.append(row)
        lows += [row[1], row[3]]
        highs += [row[2], row[4]]
    plan.estimate_low = _sum(lows)
    plan.estimate_high = _sum(highs)


def run_create(*, owner: Any, plan: RunPlan, name: str = "") -> EvalRun:
    """A new running evaluation from ``plan`` (its runner is started by ``runner.run_launch``)."""
    now = timezone.now()
    labels = " vs ".join(contender.label for contender in plan.contenders)
    with transaction.atomic():
        run = EvalRun.objects.create(
            owner=owner,
            task_set=plan.task_set,
            name=(name or f"{plan.task_set.name}: {labels}")[:200],
            grader=plan.grader,
            task_ids=[task.pk for task in plan.tasks],
            limit=plan.limit,
            seed=plan.seed,
            concurrency=plan.concurrency,
            budget=plan.budget,
            estimate_low=plan.estimate_low,
            estimate_high=plan.estimate_high,
            status=EvalRun.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
        )
        Contender.objects.bulk_create(
            Contender(
                run=run,
                position=index,
                kind=contender.kind,
                ref=contender.ref,
                label=contender.label,
                snapshot=contender.snapshot,
                is_demo=contender.is_demo,
            )
            for index, contender in enumerate(plan.contenders, start=1)
        )
    return run


# --- Lifecycle ------------------------------------------------------------------------------------------


def stale_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "EVALUATION_STALE_AFTER_SECONDS", 30.0)))


def runs_reap_stale(*, owner: Any = None) -> int:
    """Mark running evaluations whose heartbeat is stale as interrupted (their process died): resumable."""
    cutoff = timezone.now() - stale_after()
    stale = EvalRun.objects.filter(status=EvalRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    if owner is not None:
        stale = stale.filter(owner=owner)
    return stale.update(
        status=EvalRun.Status.INTERRUPTED,
        error_message="The server process running this evaluation stopped. Resume it to continue.",
        finished_at=timezone.now(),
    )


def run_cancel(*, run: EvalRun) -> bool:
    """Ask a running evaluation to stop: its runner, in whichever process, sees the status on its next
    heartbeat write and stops; what was saved stays. False if it was not running."""
    updated = EvalRun.objects.filter(pk=run.pk, status=EvalRun.Status.RUNNING).update(
        status=EvalRun.Status.CANCELLED, error_message="Cancelled.", finished_at=timezone.now()
    )
    return bool(updated)


def run_reopen(*, run: EvalRun, budget: float | None = None) -> EvalRun:
    """Make a stopped (budget, cancelled, interrupted) evaluation running again, for its runner to resume;
    ``budget`` raises the cap. ``EvaluationInvalid`` when it cannot be resumed."""
    runs_reap_stale(owner=run.owner_id)
    run.refresh_from_db()
    if not run.resumable:
        raise EvaluationInvalid(f"This evaluation is {run.status}: only a stopped one can be resumed.")
    if budget is not None:
        if budget <= 0:
            raise EvaluationInvalid("The budget must be more than $0.")
        run.budget = budget
    now = timezone.now()
    run.status = EvalRun.Status.RUNNING
    run.error_message = ""
    run.started_at = now
    run.heartbeat_at = now
    run.finished_at = None
    run.save(update_fields=["status", "error_message", "started_at", "heartbeat_at", "finished_at", "budget"])
    return run


def run_delete(*, run: EvalRun) -> None:
    run.delete()


# --- Share links ------------------------------------------------------------------------------------------


def share_link_create(*, run: EvalRun) -> tuple[EvalShareLink, str]:
    """A new read-only link to the results. Returns the row and the token, shown once and never stored."""
    token = share_token_new()
    link = EvalShareLink.objects.create(run=run, token_hash=share_token_hash(token))
    return link, token


def share_link_revoke(*, link: EvalShareLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
