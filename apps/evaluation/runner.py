"""Server-owned evaluation runs: a run is an asyncio task in the process that started it, its state in the
database, like a chatroom turn's.

``run_launch`` starts the task on the current event loop (an async view's: the server's, which outlives the
request; or the ``evaluate`` command's) and keeps it referenced here. The runner loads what is already
done (answers, verdicts) and does only the rest, so a resumed run never repeats a finished answer or
verdict (and the unique constraints refuse a duplicate even if it tried). Model calls run at most
``concurrency`` at a time (a freed slot goes to an answer before a verdict). Before each call the budget
reserves that call's typical cost; when it would pass the cap, no new call starts, the calls in flight
finish and the run ends ``budget`` (resumable with a higher cap). Verdicts are written in batches by a
writer task every ``FLUSH_SECONDS``, which also refreshes the heartbeat and notices a cancel made from any
process (the status is no longer ``running``). Whatever stops the run, it ends with a status: done, budget,
cancelled, or interrupted (keeping what was saved).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.evaluation.contenders import (
    TYPICAL_ANSWER_TOKENS,
    VERDICT_TOKENS,
    AnswerResult,
    answer_estimate,
    call_cost,
    contender_answer,
    tokens_for,
)
from apps.evaluation.grading import (
    DEMO_GRADER,
    GRADER_SYSTEM,
    CriterionText,
    GradeResult,
    GraderUnavailable,
    grade,
)
from apps.evaluation.models import Answer, Contender, Criterion, EvalRun, Task, Verdict
from apps.providers.base import ModelGateway
from apps.providers.registry import gateway_from_settings

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
# Pairs (a contender on a task) in progress per call slot. A pair grading its answer holds no slot while its
# verdicts wait for one; with one pair per slot the answers would wait for every verdict and the slots sit
# idle between the two. More pairs than slots keep answers and verdicts interleaved and every slot busy,
# while still finishing tasks in order (progress and a budget stop leave whole tasks, not stray answers).
PAIRS_PER_SLOT = 2


@dataclass
class ContenderWork:
    id: int
    kind: str
    ref: str
    label: str
    snapshot: dict[str, Any]


@dataclass
class TaskWork:
    id: int
    problem: str
    criteria: list[tuple[int, CriterionText]]


@dataclass
class Plan:
    run_id: int
    grader: str
    concurrency: int
    budget: float | None
    contenders: list[ContenderWork]
    tasks: list[TaskWork]
    # (contender id, task id) -> (answer id, text) of answers already done.
    answers: dict[tuple[int, int], tuple[int, str]]
    # (answer id, criterion id) already graded.
    verdicts: set[tuple[int, int]]
    spent: float
    active_seconds: float
    # Typical cost of one answer per contender, and of one verdict: the budget's reservation until calls of
    # that kind have been seen (then their mean, if higher).
    answer_floor: dict[int, float] = field(default_factory=dict)
    verdict_floor: float = 0.0


@dataclass
class Counts:
    """One contender's progress, as the terminal shows it."""

    total: int
    done: int = 0
    failed: int = 0
    cost: float = 0.0


ANSWER, VERDICT = 0, 1


class Slots:
    """``concurrency`` call slots; a freed slot goes to a waiting answer before a waiting verdict.

    Answers are the long calls that verdicts wait on: starting them first keeps work flowing to the end, so
    the last answers do not start behind hundreds of verdicts and then run alone with the slots idle.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),
            collections.deque(),
        )

    @contextlib.asynccontextmanager
    async def held(self, kind: int) -> AsyncIterator[None]:
        await self._acquire(kind)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, kind: int) -> None:
        if self.free > 0 and not any(self.waiting):
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[kind].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed a slot as it was cancelled: pass it on
            else:
                self.waiting[kind].remove(future)
            raise

    def _release(self) -> None:
        for queue in self.waiting:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self.free += 1


class Budget:
    """Spent plus reserved never passes the cap when a call starts: a call reserves its typical cost first."""

    def __init__(self, cap: float | None, spent: float) -> None:
        self.cap = cap
        self.spent = spent
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, amount: float) -> bool:
        if self.cap is None:
            return True
        if self.exhausted or self.spent + self.reserved + amount > self.cap:
            self.exhausted = True
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, cost: float | None) -> None:
        if self.cap is not None:
            self.reserved -= reserved
        self.spent += cost or 0.0


@dataclass
class _Typical:
    """Running mean of one kind of call's actual cost, the reservation for the next one."""

    floor: float = 0.0
    total: float = 0.0
    n: int = 0

    def add(self, cost: float | None) -> None:
        if cost is not None:
            self.total += cost
            self.n += 1

    @property
    def value(self) -> float:
        return max(self.floor, self.total / self.n if self.n else 0.0)


class EvalRunner:
    def __init__(
        self,
        *,
        run_id: int,
        gateway: ModelGateway | None = None,
        on_progress: Callable[[EvalRunner], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.gateway = gateway or gateway_from_settings()
        self.on_progress = on_progress
        self.counts: dict[int, Counts] = {}
        self.labels: dict[int, str] = {}
        self.task: asyncio.Task[None] | None = None
        self.budget = Budget(None, 0.0)
        self.grader_errors = 0
        self.grader = ""
        self.status = EvalRun.Status.RUNNING
        self._pending: list[Verdict] = []
        self._stop = asyncio.Event()
        self._writer_stop = asyncio.Event()
        self._cancelled_elsewhere = False
        self._answer_typical: dict[int, _Typical] = {}
        self._grade_typical = _Typical()
        self._slots = Slots(1)
        self._started = time.monotonic()
        self._active_before = 0.0

    # --- the task -------------------------------------------------------------------------------------

    async def run(self) -> None:
        plan = await _plan_load(self.run_id)
        self.grader = plan.grader
        self._slots = Slots(plan.concurrency)
        self.budget = Budget(plan.budget, plan.spent)
        self._active_before = plan.active_seconds
        self._started = time.monotonic()
        for contender in plan.contenders:
            self.labels[contender.id] = contender.label
            self._answer_typical[contender.id] = _Typical(floor=plan.answer_floor.get(contender.id, 0.0))
        self._grade_typical = _Typical(floor=plan.verdict_floor)
        await _counts_load(self, plan)
        writer = asyncio.create_task(self._writer())
        status, message = EvalRun.Status.INTERRUPTED, "The evaluation stopped before it finished."
        try:
            await self._work(plan)
            if self._cancelled_elsewhere:
                status, message = EvalRun.Status.CANCELLED, "Cancelled."
            elif self.budget.exhausted:
                status = EvalRun.Status.BUDGET
                message = (
                    f"Stopped before passing the ${plan.budget:.2f} budget "
                    f"(${self.budget.spent:.4f} spent). Resume with a higher budget to continue."
                )
            elif self.grader_errors:
                message = (
                    f"The grader failed on {self.grader_errors} criteria; those are not graded yet. "
                    "Resume to try them again."
                )
            else:
                status, message = EvalRun.Status.DONE, ""
        except asyncio.CancelledError:
            # A cancel asked for is "cancelled"; anything else (the server shutting down) is an interruption.
            if self._cancelled_elsewhere:
                status, message = EvalRun.Status.CANCELLED, "Cancelled."
            raise
        except Exception:
            logger.exception("evaluation %s failed", self.run_id)
            status = EvalRun.Status.INTERRUPTED
        finally:
            self._writer_stop.set()
            await asyncio.shield(writer)
            self.status = status
            # Saved even when cancelled: finished verdicts are results, and a resume must not redo them.
            await asyncio.shield(self._final_write(status, message))

    async def _work(self, plan: Plan) -> None:
        queue: asyncio.Queue[tuple[ContenderWork, TaskWork]] = asyncio.Queue()
        # Task by task, every contender on each: contenders progress evenly, and a budget stop leaves
        # comparable results (the same tasks answered by each).
        for task in plan.tasks:
            for contender in plan.contenders:
                queue.put_nowait((contender, task))

        async def worker() -> None:
            while not self._stop.is_set():
                try:
                    contender, task = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._pair(plan, contender, task)

        workers = [asyncio.create_task(worker()) for _ in range(plan.concurrency * PAIRS_PER_SLOT)]
        try:
            await asyncio.gather(*workers)
        finally:
            for pending in workers:
                pending.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _should_stop(self) -> bool:
        return self._stop.is_set() or self.budget.exhausted

    async def _pair(self, plan: Plan, contender: ContenderWork, task: TaskWork) -> None:
        counts = self.counts[contender.id]
        known = plan.answers.get((contender.id, task.id))
        if known is None:
            typical = self._answer_typical[contender.id]
            reserved = typical.value
            if self._should_stop() or not self.budget.reserve(reserved):
                return
            async with self._slots.held(ANSWER):
                result: AnswerResult = await contender_answer(
                    kind=contender.kind,
                    ref=contender.ref,
                    snapshot=contender.snapshot,
                    prompt=task.problem,
                    gateway=self.gateway,
                )
            self.budget.settle(reserved, result.cost)
            typical.add(result.cost)
            counts.cost += result.cost or 0.0
            answer_id = await _answer_save(plan.run_id, contender.id, task.id, result)
            if not result.ok:
                counts.failed += 1
                counts.done += 1
                self._progress()
                return
            known = (answer_id, result.text)
        answer_id, text = known
        todo = [(pk, c) for pk, c in task.criteria if (answer_id, pk) not in plan.verdicts]
        outcomes = await asyncio.gather(
            *(self._grade_one(answer_id, task.problem, text, pk, c, counts) for pk, c in todo)
        )
        if all(outcomes):
            counts.done += 1
            self._progress()

    async def _grade_one(
        self,
        answer_id: int,
        problem: str,
        text: str,
        criterion_id: int,
        criterion: CriterionText,
        counts: Counts,
    ) -> bool:
        reserved = self._grade_typical.value
        if self._should_stop() or not self.budget.reserve(reserved):
            return False
        try:
            async with self._slots.held(VERDICT):
                result: GradeResult = await grade(
                    gateway=self.gateway,
                    grader=self.grader,
                    problem=problem,
                    response=text,
                    criterion=criterion,
                )
        except GraderUnavailable as error:
            self.budget.settle(reserved, error.cost)
            counts.cost += error.cost or 0.0
            self.grader_errors += 1
            return False
        self.budget.settle(reserved, result.cost)
        self._grade_typical.add(result.cost)
        counts.cost += result.cost or 0.0
        self._pending.append(
            Verdict(
                answer_id=answer_id,
                criterion_id=criterion_id,
                status=result.status,
                reason=result.reason[:500],
                cost=result.cost,
            )
        )
        return True

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)

    def elapsed(self) -> float:
        return self._active_before + time.monotonic() - self._started

    # --- the writer: verdicts in batches, heartbeat, cancels from elsewhere -----------------------------

    async def _writer(self) -> None:
        """Never cancelled mid-write: a write still queued for the ORM's thread would be dropped with its
        batch. It is told to stop (``_writer_stop``) and ends after the write in hand; the final write takes
        what is left."""
        heartbeat = float(getattr(settings, "EVALUATION_HEARTBEAT_SECONDS", 5.0))
        last_beat = 0.0
        while not self._writer_stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writer_stop.wait(), FLUSH_SECONDS)
            if self._writer_stop.is_set():
                return
            now = time.monotonic()
            beat = now - last_beat >= heartbeat
            if not self._pending and not beat:
                continue
            batch, self._pending = self._pending, []
            try:
                alive = await _flush(self.run_id, batch)
            except Exception:
                logger.exception("evaluation %s: writing verdicts failed; retrying", self.run_id)
                self._pending = batch + self._pending
                continue
            last_beat = now
            if not alive:
                # Cancelled (or reaped) from elsewhere: stop, cancelling the calls in flight.
                self.cancel()
                return

    def cancel(self) -> None:
        """Stop the run here: no new call starts and the calls in flight are cancelled; saved work stays."""
        self._cancelled_elsewhere = True
        self._stop.set()
        if self.task is not None and asyncio.current_task() is not self.task:
            self.task.cancel()

    async def _final_write(self, status: str, message: str) -> None:
        batch, self._pending = self._pending, []
        await _finish(self.run_id, batch, status=status, message=message, active_seconds=self.elapsed())


# --- database helpers (each a short transaction on the ORM thread) ------------------------------------------


@database_sync_to_async
def _plan_load(run_id: int) -> Plan:
    run = EvalRun.objects.get(pk=run_id)
    contenders = [
        ContenderWork(c.pk, c.kind, c.ref, c.label, c.snapshot) for c in Contender.objects.filter(run=run)
    ]
    order = {task_id: index for index, task_id in enumerate(run.task_ids)}
    tasks_by_id = {task.pk: task for task in Task.objects.filter(pk__in=run.task_ids)}
    criteria: dict[int, list[tuple[int, CriterionText]]] = {task_id: [] for task_id in tasks_by_id}
    for row in Criterion.objects.filter(task_id__in=tasks_by_id).order_by("task_id", "position"):
        criteria[row.task_id].append((row.pk, CriterionText(row.external_id, row.weight, row.requirement)))
    tasks = [
        TaskWork(task.pk, task.problem, criteria[task.pk])
        for task in sorted(tasks_by_id.values(), key=lambda task: order[task.pk])
    ]
    answers = {
        (a.contender_id, a.task_id): (a.pk, a.text)
        for a in Answer.objects.filter(run=run, status=Answer.Status.DONE).only(
            "pk", "contender_id", "task_id", "text"
        )
    }
    verdicts = set(Verdict.objects.filter(answer__run=run).values_list("answer_id", "criterion_id"))
    spent = (Answer.objects.filter(run=run).aggregate(s=Sum("cost"))["s"] or 0.0) + (
        Verdict.objects.filter(answer__run=run).aggregate(s=Sum("cost"))["s"] or 0.0
    )
    floors, verdict_floor = _floors(run, contenders, tasks)
    return Plan(
        run_id=run.pk,
        grader=run.grader,
        concurrency=run.concurrency,
        budget=run.budget,
        contenders=contenders,
        tasks=tasks,
        answers=answers,
        verdicts=verdicts,
        spent=float(spent),
        active_seconds=run.active_seconds,
        answer_floor=floors,
        verdict_floor=verdict_floor,
    )


def _floors(
    run: EvalRun, contenders: list[ContenderWork], tasks: list[TaskWork]
) -> tuple[dict[int, float], float]:
    """Typical costs (catalog prices, typical lengths) of an answer per contender and of one verdict."""
    if run.budget is None or not tasks:
        return {}, 0.0
    gateway = gateway_from_settings()
    floors = {}
    for contender in contenders:
        costs = [
            answer_estimate(
                plan_kind=contender.kind,
                ref=contender.ref,
                snapshot=contender.snapshot,
                prompt=t.problem,
                gateway=gateway,
            ).low
            for t in tasks
        ]
        floors[contender.id] = max((cost for cost in costs if cost is not None), default=0.0)
    if run.grader == DEMO_GRADER:
        return floors, 0.0
    longest = max(tasks, key=lambda t: len(t.problem))
    criterion_chars = max((len(c.requirement) for t in tasks for _, c in t.criteria), default=0)
    prompt = (
        tokens_for(len(GRADER_SYSTEM) + len(longest.problem) + criterion_chars + 200) + TYPICAL_ANSWER_TOKENS
    )
    return floors, call_cost(gateway, run.grader, prompt, VERDICT_TOKENS) or 0.0


@database_sync_to_async
def _counts_rows(run_id: int) -> list[tuple[int, int, str, float | None]]:
    return list(Answer.objects.filter(run_id=run_id).values_list("contender_id", "task_id", "status", "cost"))


async def _counts_load(runner: EvalRunner, plan: Plan) -> None:
    """What is already done, per contender (a resumed run's bar starts where it stopped)."""
    criteria = {task.id: {pk for pk, _ in task.criteria} for task in plan.tasks}
    graded: dict[int, int] = {}
    for answer_id, _criterion in plan.verdicts:
        graded[answer_id] = graded.get(answer_id, 0) + 1
    for contender in plan.contenders:
        runner.counts[contender.id] = Counts(total=len(plan.tasks))
    for contender_id, task_id, status, cost in await _counts_rows(plan.run_id):
        counts = runner.counts.get(contender_id)
        if counts is None or task_id not in criteria:
            continue
        counts.cost += cost or 0.0
        if status == Answer.Status.FAILED:
            continue
        answer_id = plan.answers[(contender_id, task_id)][0]
        if graded.get(answer_id, 0) >= len(criteria[task_id]):
            counts.done += 1


@database_sync_to_async
def _answer_save(run_id: int, contender_id: int, task_id: int, result: AnswerResult) -> int:
    # A failed answer is done again by a resumed run: the row is updated, never duplicated.
    answer, _ = Answer.objects.update_or_create(
        run_id=run_id,
        contender_id=contender_id,
        task_id=task_id,
        defaults={
            "status": Answer.Status.DONE if result.ok else Answer.Status.FAILED,
            "text": result.text,
            "error": result.error[:2000],
            "cost": result.cost,
            "latency_ms": result.latency_ms,
        },
    )
    return int(answer.pk)


@database_sync_to_async
def _flush(run_id: int, batch: list[Verdict]) -> bool:
    """Write ``batch`` and refresh the heartbeat. False when the run is no longer running (cancelled, or
    deleted: then its verdicts have nowhere to go and are dropped rather than retried for ever)."""
    with transaction.atomic():
        updated = EvalRun.objects.filter(pk=run_id, status=EvalRun.Status.RUNNING).update(
            heartbeat_at=timezone.now()
        )
        if batch and (updated or EvalRun.objects.filter(pk=run_id).exists()):
            Verdict.objects.bulk_create(batch, ignore_conflicts=True)
    return bool(updated)


@database_sync_to_async
def _finish(run_id: int, batch: list[Verdict], *, status: str, message: str, active_seconds: float) -> None:
    if batch and EvalRun.objects.filter(pk=run_id).exists():
        Verdict.objects.bulk_create(batch, ignore_conflicts=True)
    EvalRun.objects.filter(pk=run_id).update(active_seconds=active_seconds)
    # A cancel made elsewhere already set the status: it stays.
    EvalRun.objects.filter(pk=run_id, status=EvalRun.Status.RUNNING).update(
        status=status, error_message=message, finished_at=timezone.now(), heartbeat_at=timezone.now()
    )


# --- the process's runs ------------------------------------------------------------------------------------

_runners: dict[int, EvalRunner] = {}


def run_launch(*, run_id: int, gateway: ModelGateway | None = None) -> EvalRunner:
    """Start ``run_id``'s runner as a task on the running loop; the task, not the caller, owns the run."""
    runner = EvalRunner(run_id=run_id, gateway=gateway)
    runner.task = asyncio.get_running_loop().create_task(runner.run(), name=f"evaluation-{run_id}")
    _runners[run_id] = runner
    runner.task.add_done_callback(lambda _task: _runners.pop(run_id, None))
    return runner


def runner_for(run_id: int) -> EvalRunner | None:
    return _runners.get(run_id)
