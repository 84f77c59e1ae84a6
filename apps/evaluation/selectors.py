"""Read-side queries of the evaluation bench: what a user may see, a run's progress and its results."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from apps.chat.share_tokens import share_token_hash
from apps.evaluation.models import (
    Answer,
    Contender,
    Criterion,
    EvalRun,
    EvalShareLink,
    Task,
    TaskSet,
    Verdict,
)
from apps.evaluation.scoring import Graded, MeanInterval, WinRate, mean_interval, percentile, score, win_rate


def tasksets_for(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[TaskSet]:
    if not user.is_authenticated:
        return TaskSet.objects.none()
    return TaskSet.objects.filter(owner_id=user.pk).annotate(task_count=Count("tasks"))


def taskset_get_for(*, user: AbstractBaseUser | AnonymousUser, task_set_id: int) -> TaskSet:
    return tasksets_for(user=user).get(pk=task_set_id)


def runs_for(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[EvalRun]:
    if not user.is_authenticated:
        return EvalRun.objects.none()
    return EvalRun.objects.filter(owner_id=user.pk).select_related("task_set")


def run_get_for(*, user: AbstractBaseUser | AnonymousUser, run_id: int) -> EvalRun:
    """One of the user's runs; ``EvalRun.DoesNotExist`` for anyone else's (so a 404)."""
    return runs_for(user=user).get(pk=run_id)


def shared_run_get(*, token: str) -> EvalRun:
    """The run behind an active share link; ``EvalRun.DoesNotExist`` otherwise."""
    link = (
        EvalShareLink.objects.select_related("run", "run__task_set")
        .filter(token_hash=share_token_hash(token), revoked_at__isnull=True)
        .first()
    )
    if link is None:
        raise EvalRun.DoesNotExist("No such shared evaluation")
    return link.run


def share_links_for(*, run: EvalRun) -> QuerySet[EvalShareLink]:
    return run.share_links.filter(revoked_at__isnull=True).order_by("-created_at")


def share_link_get_for(*, run: EvalRun, link_id: int) -> EvalShareLink:
    return run.share_links.get(pk=link_id)


# --- Progress ---------------------------------------------------------------------------------------------


@dataclass
class ContenderProgress:
    label: str
    is_demo: bool
    done: int
    failed: int
    total: int
    cost: float
    cost_unknown: bool
    seconds_left: float | None

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.done / self.total)


def _elapsed(run: EvalRun) -> float:
    elapsed = run.active_seconds
    if run.is_running and run.started_at is not None:
        elapsed += (timezone.now() - run.started_at).total_seconds()
    return elapsed


def run_progress(*, run: EvalRun) -> list[ContenderProgress]:
    """Per contender: tasks done (answered and fully graded, or failed), cost so far and time left."""
    criteria = dict(
        Criterion.objects.filter(task_id__in=run.task_ids)
        .values("task_id")
        .annotate(n=Count("pk"))
        .values_list("task_id", "n")
    )
    answers = (
        Answer.objects.filter(run=run)
        .annotate(graded=Count("verdicts"), grading=Sum("verdicts__cost"))
        .values("contender_id", "task_id", "status", "graded", "cost", "grading")
    )
    done: dict[int, int] = defaultdict(int)
    failed: dict[int, int] = defaultdict(int)
    cost: dict[int, float] = defaultdict(float)
    unknown: set[int] = set()
    for row in answers:
        contender = row["contender_id"]
        for value in (row["cost"], row["grading"]):
            cost[contender] += value or 0.0
        if row["cost"] is None:
            unknown.add(contender)
        if row["status"] == Answer.Status.FAILED:
            failed[contender] += 1
            done[contender] += 1
        elif row["graded"] >= criteria.get(row["task_id"], 0):
            done[contender] += 1
    total = len(run.task_ids)
    elapsed = _elapsed(run)
    rows = []
    for contender in run.contenders.all():
        finished = done[contender.pk]
        left = None
        if run.is_running and finished:
            left = elapsed / finished * (total - finished)
        rows.append(
            ContenderProgress(
                label=contender.label,
                is_demo=contender.is_demo,
                done=finished,
                failed=failed[contender.pk],
                total=total,
                cost=cost[contender.pk],
                cost_unknown=contender.pk in unknown,
                seconds_left=left,
            )
        )
    return rows


# --- Results ----------------------------------------------------------------------------------------------


@dataclass
class TaskOutcome:
    task_id: int
    status: str  # done, failed
    score: float | None
    sections: dict[str, float | None]
    ungraded: int
    answer_cost: float | None
    grading_cost: float | None
    latency_ms: float | None


@dataclass
class ContenderResult:
    id: int
    label: str
    spec: str
    is_demo: bool
    interval: MeanInterval
    sections: dict[str, float | None]
    n: int
    failed: int
    ungraded: int
    answer_cost_per_task: float | None
    grading_cost_per_task: float | None
    answer_cost_total: float | None
    grading_cost_total: float | None
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    outcomes: dict[int, TaskOutcome] = field(default_factory=dict)


@dataclass
class Results:
    sections: list[tuple[str, str]]  # (id, title) in rubric order
    contenders: list[ContenderResult]
    win_rates: list[WinRate]
    tasks: list[Task]
    grader: str
    grader_is_demo: bool

    def scores_by_task(self) -> list[tuple[Task, list[TaskOutcome | None]]]:
        return [(task, [c.outcomes.get(task.pk) for c in self.contenders]) for task in self.tasks]


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def _total(values: list[float | None]) -> float | None:
    return None if any(value is None for value in values) else sum(value or 0.0 for value in values)


def run_results(*, run: EvalRun) -> Results:
    """Scores per contender (mean with its 95% t interval, per section), costs, latency, win rates."""
    order = {task_id: index for index, task_id in enumerate(run.task_ids)}
    tasks = sorted(Task.objects.filter(pk__in=run.task_ids), key=lambda task: order[task.pk])
    criteria = {
        c.pk: c
        for c in Criterion.objects.filter(task_id__in=run.task_ids).only(
            "pk", "task_id", "weight", "section_id", "section_title"
        )
    }
    per_task: dict[int, int] = defaultdict(int)
    sections: dict[str, str] = {}
    for criterion in sorted(criteria.values(), key=lambda c: (order[c.task_id], c.pk)):
        per_task[criterion.task_id] += 1
        sections.setdefault(criterion.section_id, criterion.section_title or criterion.section_id)
    verdicts: dict[int, list[Verdict]] = defaultdict(list)
    for verdict in Verdict.objects.filter(answer__run=run).only(
        "answer_id", "criterion_id", "status", "cost"
    ):
        verdicts[verdict.answer_id].append(verdict)
    answers: dict[int, list[Answer]] = defaultdict(list)
    for answer in Answer.objects.filter(run=run).only(
        "pk", "contender_id", "task_id", "status", "cost", "latency_ms"
    ):
        answers[answer.contender_id].append(answer)
    contenders = []
    for contender in Contender.objects.filter(run=run):
        contenders.append(_contender_result(contender, answers[contender.pk], verdicts, criteria, per_task))
    pairs = [
        win_rate(
            a.label,
            b.label,
            {t: o.score for t, o in a.outcomes.items() if o.score is not None},
            {t: o.score for t, o in b.outcomes.items() if o.score is not None},
        )
        for i, a in enumerate(contenders)
        for b in contenders[i + 1 :]
    ]
    return Results(
        sections=list(sections.items()),
        contenders=contenders,
        win_rates=pairs,
        tasks=tasks,
        grader=run.grader,
        grader_is_demo=run.grader.startswith("demo/"),
    )


def _contender_result(
    contender: Contender,
    answers: list[Answer],
    verdicts: dict[int, list[Verdict]],
    criteria: dict[int, Criterion],
    per_task: dict[int, int],
) -> ContenderResult:
    outcomes: dict[int, TaskOutcome] = {}
    for answer in answers:
        found = verdicts.get(answer.pk, [])
        grading_cost = _total([v.cost for v in found])
        if answer.status == Answer.Status.FAILED:
            outcomes[answer.task_id] = TaskOutcome(
                answer.task_id, "failed", None, {}, 0, answer.cost, grading_cost, answer.latency_ms
            )
            continue
        if len(found) < per_task.get(answer.task_id, 0):
            continue  # still being graded (or stopped mid-way): not scored yet
        graded = [
            Graded(criteria[v.criterion_id].weight, v.status, criteria[v.criterion_id].section_id)  # type: ignore[arg-type]
            for v in found
        ]
        by_section: dict[str, list[Graded]] = defaultdict(list)
        for item in graded:
            by_section[item.section].append(item)
        outcomes[answer.task_id] = TaskOutcome(
            task_id=answer.task_id,
            status="done",
            score=score(graded),
            sections={section: score(items) for section, items in by_section.items()},
            ungraded=sum(1 for v in found if v.status == Verdict.Status.UNGRADED),
            answer_cost=answer.cost,
            grading_cost=grading_cost,
            latency_ms=answer.latency_ms,
        )
    scored = [o for o in outcomes.values() if o.status == "done" and o.score is not None]
    section_ids = {section for o in scored for section in o.sections}
    latencies = [o.latency_ms for o in outcomes.values() if o.status == "done" and o.latency_ms is not None]
    answer_costs = [o.answer_cost for o in outcomes.values()]
    grading_costs = [o.grading_cost for o in outcomes.values()]
    return ContenderResult(
        id=contender.pk,
        label=contender.label,
        spec=contender.spec,
        is_demo=contender.is_demo,
        interval=mean_interval([o.score for o in scored if o.score is not None]),
        sections={s: _mean([o.sections.get(s) for o in scored]) for s in section_ids},
        n=len(scored),
        failed=sum(1 for o in outcomes.values() if o.status == "failed"),
        ungraded=sum(o.ungraded for o in scored),
        answer_cost_per_task=_mean(answer_costs) if None not in answer_costs else None,
        grading_cost_per_task=_mean(grading_costs) if None not in grading_costs else None,
        answer_cost_total=_total(answer_costs),
        grading_cost_total=_total(grading_costs),
        latency_p50_ms=percentile(latencies, 50),
        latency_p90_ms=percentile(latencies, 90),
        outcomes=outcomes,
    )


@dataclass
class VerdictRow:
    criterion: Criterion
    status: str  # met, unmet, ungraded, pending
    reason: str


@dataclass
class TaskAnswer:
    contender: Contender
    answer: Answer | None
    outcome: TaskOutcome | None
    verdicts: list[VerdictRow]


def task_detail(*, run: EvalRun, task: Task, results: Results) -> list[TaskAnswer]:
    """Each contender's answer to ``task`` beside its criteria, with the grader's verdicts and reasons."""
    criteria = list(task.criteria.all())
    answers = {a.contender_id: a for a in Answer.objects.filter(run=run, task=task)}
    verdicts: dict[int, dict[int, Verdict]] = defaultdict(dict)
    for verdict in Verdict.objects.filter(answer__in=answers.values()):
        verdicts[verdict.answer_id][verdict.criterion_id] = verdict
    outcomes = {c.id: c.outcomes.get(task.pk) for c in results.contenders}
    rows = []
    for contender in run.contenders.all():
        answer = answers.get(contender.pk)
        found = verdicts.get(answer.pk, {}) if answer else {}
        rows.append(
            TaskAnswer(
                contender=contender,
                answer=answer,
                outcome=outcomes.get(contender.pk),
                verdicts=[
                    VerdictRow(
                        c,
                        found[c.pk].status if c.pk in found else "pending",
                        found[c.pk].reason if c.pk in found else "",
                    )
                    for c in criteria
                ],
            )
        )
    return rows


def run_task_get(*, run: EvalRun, task_id: int) -> Task:
    if task_id not in run.task_ids:
        raise Task.DoesNotExist("Not a task of this run")
    return Task.objects.get(pk=task_id, task_set_id=run.task_set_id)


# --- Export -----------------------------------------------------------------------------------------------


def results_json(*, run: EvalRun, results: Results) -> dict[str, Any]:
    """The run and its results as one JSON object (the export and ``evaluate --out``)."""
    titles = dict(results.sections)
    return {
        "evaluation": {
            "id": run.pk,
            "name": run.name,
            "task_set": run.task_set.name,
            "status": run.status,
            "grader": run.grader,
            "grader_is_demo": results.grader_is_demo,
            "tasks": len(run.task_ids),
            "seed": run.seed,
            "limit": run.limit,
            "budget": run.budget,
            "interval": "95% Student's t interval over tasks",
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "contenders": [
            {
                "label": c.label,
                "contender": c.spec,
                "is_demo": c.is_demo,
                "score": c.interval.mean,
                "ci95": [c.interval.low, c.interval.high],
                "n": c.n,
                "failed": c.failed,
                "ungraded_criteria": c.ungraded,
                "sections": {titles.get(s, s): v for s, v in sorted(c.sections.items())},
                "answer_cost_per_task": c.answer_cost_per_task,
                "grading_cost_per_task": c.grading_cost_per_task,
                "answer_cost_total": c.answer_cost_total,
                "grading_cost_total": c.grading_cost_total,
                "latency_p50_ms": c.latency_p50_ms,
                "latency_p90_ms": c.latency_p90_ms,
            }
            for c in results.contenders
        ],
        "win_rates": [
            {"a": w.a, "b": w.b, "wins": w.wins, "ties": w.ties, "losses": w.losses, "rate": w.rate}
            for w in results.win_rates
        ],
        "tasks": [
            {
                "id": task.external_id,
                "domain": task.domain,
                "results": {
                    c.label: None
                    if o is None
                    else {
                        "status": o.status,
                        "score": o.score,
                        "answer_cost": o.answer_cost,
                        "grading_cost": o.grading_cost,
                        "latency_ms": o.latency_ms,
                    }
                    for c, o in zip(results.contenders, outcomes, strict=True)
                },
            }
            for task, outcomes in results.scores_by_task()
        ],
    }


def results_csv_rows(*, results: Results) -> list[list[str]]:
    """One row per contender and task (with its section scores), after a header."""
    header = ["contender", "demo", "task", "domain", "status", "score"]
    header += [title for _, title in results.sections]
    header += ["answer_cost_usd", "grading_cost_usd", "latency_ms", "ungraded_criteria"]
    rows = [header]

    def cell(value: float | None, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for task, outcomes in results.scores_by_task():
        for contender, outcome in zip(results.contenders, outcomes, strict=True):
            if outcome is None:
                continue
            rows.append(
                [
                    contender.label,
                    "yes" if contender.is_demo else "no",
                    task.external_id,
                    task.domain,
                    outcome.status,
                    cell(outcome.score),
                    *[cell(outcome.sections.get(section)) for section, _ in results.sections],
                    cell(outcome.answer_cost, 6),
                    cell(outcome.grading_cost, 6),
                    cell(outcome.latency_ms, 0),
                    str(outcome.ungraded),
                ]
            )
    return rows
