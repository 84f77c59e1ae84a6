"""``manage.py evaluate --tasks sample --contender preset:demo --contender model:demo/atlas``: an evaluation
in the terminal.

Imports the tasks (a DRACO-format JSONL file, or ``sample``), shows the cost estimate, runs every contender
on every task (or a seeded sample of ``--limit``) with a progress bar, grades each answer criterion by
criterion and prints the results table; ``--out`` writes them as JSON. The run is stored like one started
in the browser (owned by ``--user``), so the Evaluations page shows it too. Ctrl-C interrupts it;
``--resume <id>`` continues it without repeating a finished answer or verdict.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from apps.evaluation import selectors, services
from apps.evaluation.grading import DEMO_GRADER
from apps.evaluation.models import EvalRun
from apps.evaluation.runner import EvalRunner
from apps.evaluation.scoring import MeanInterval
from apps.evaluation.selectors import Results
from apps.evaluation.services import EvaluationInvalid
from apps.evaluation.tasksets import TaskSetInvalid, text_decode

DEFAULT_USER = "evaluate"
BAR_WIDTH = 24


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} s"


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _score(interval: MeanInterval) -> str:
    if interval.mean is None:
        return "-"
    if interval.half_width is None:
        return _pct(interval.mean)
    return f"{_pct(interval.mean)} ± {interval.half_width * 100:.1f}"


def results_table(results: Results) -> str:
    """The results as a plain-text table: score (± the 95% t half-width), sections, costs, latency, n."""
    header = ["Contender", "Score (95% CI)"]
    header += [title for _, title in results.sections]
    header += ["Answer $/task", "Grading $/task", "p50", "p90", "n"]
    rows = [header]
    for c in results.contenders:
        rows.append(
            [
                c.label,
                _score(c.interval),
                *[_pct(c.sections.get(section)) for section, _ in results.sections],
                _money(c.answer_cost_per_task),
                _money(c.grading_cost_per_task),
                _ms(c.latency_p50_ms),
                _ms(c.latency_p90_ms),
                f"{c.n}" + (f" ({c.failed} failed)" if c.failed else ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    text = "\n".join(lines) + "\n"
    for rate in results.win_rates:
        text += (
            f"{rate.a} vs {rate.b}: {_count(rate.wins, 'win')}, {_count(rate.ties, 'tie')}, "
            f"{_count(rate.losses, 'loss', 'losses')}"
            f" (win rate {_pct(rate.rate)})\n"
        )
    return text


class ProgressBar:
    """One line per contender: a bar, tasks done, cost so far; redrawn in place on a terminal."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.drawn = 0
        self.last: str = ""

    def draw(self, runner: EvalRunner) -> None:
        lines = []
        for contender_id, counts in runner.counts.items():
            filled = BAR_WIDTH * counts.done // max(counts.total, 1)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            left = ""
            if counts.done and counts.done < counts.total:
                seconds = runner.elapsed() / counts.done * (counts.total - counts.done)
                left = f", ~{seconds:.0f} s left"
            failed = f", {counts.failed} failed" if counts.failed else ""
            label = runner.labels.get(contender_id, str(contender_id))
            lines.append(f"[{bar}] {counts.done}/{counts.total} {label} (${counts.cost:.4f}{failed}{left})")
        text = "\n".join(lines)
        if text == self.last:
            return
        self.last = text
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")
        if self.tty:
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Run an evaluation in the terminal: contenders (presets, panels, single models) answer a task set, "
        "a grader checks each rubric criterion, and a table of scores, costs and latency is printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tasks", help="a DRACO-format JSONL file, or 'sample' for the shipped sample set"
        )
        parser.add_argument(
            "--contender",
            action="append",
            default=[],
            help="preset:<slug>, panel:<id or slug> or model:<model id> (repeat for several)",
        )
        parser.add_argument(
            "--grader", default=DEMO_GRADER, help=f"grader model (default: {DEMO_GRADER}, offline)"
        )
        parser.add_argument("--limit", type=int, help="answer a seeded sample of N tasks")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
        parser.add_argument("--concurrency", type=int, default=4, help="model calls at once (default 4)")
        parser.add_argument("--budget", type=float, help="stop before spending more than this many USD")
        parser.add_argument("--out", help="write the results as JSON to this file")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped evaluation")
        parser.add_argument(
            "--user",
            default=DEFAULT_USER,
            help=f"the account that owns the results (default: {DEFAULT_USER})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["user"])
        if options["resume"]:
            run = self._reopen(user, options["resume"], options["budget"])
        else:
            run = self._create(user, options)
        self.stdout.write(f"Evaluation {run.pk}: {run}\n")
        bar = ProgressBar(self.stdout)
        runner = EvalRunner(run_id=run.pk, on_progress=bar.draw)
        try:
            asyncio.run(_evaluate(runner, bar))
        except KeyboardInterrupt:
            again = f"manage.py evaluate --resume {run.pk} --user {user.get_username()}"
            raise CommandError(f"Interrupted. Continue with: {again}", returncode=130) from None
        run.refresh_from_db()
        results = selectors.run_results(run=run)
        self.stdout.write("\n" + results_table(results))
        if results.grader_is_demo:
            self.stdout.write("Graded by the demo grader (key words only): illustrative scores.\n")
        if options["out"]:
            Path(options["out"]).write_text(
                json.dumps(selectors.results_json(run=run, results=results), indent=2), encoding="utf-8"
            )
            self.stdout.write(f"Results written to {options['out']}\n")
        if run.status == EvalRun.Status.BUDGET:
            self.stdout.write(self.style.WARNING(run.error_message + f" (--resume {run.pk} --budget ...)\n"))
        elif run.status != EvalRun.Status.DONE:
            raise CommandError(f"The evaluation ended {run.status}: {run.error_message} (--resume {run.pk})")

    def _user(self, username: str) -> Any:
        model = get_user_model()
        user, created = model.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
        return user

    def _reopen(self, user: Any, run_id: int, budget: float | None) -> EvalRun:
        try:
            run = selectors.run_get_for(user=user, run_id=run_id)
        except EvalRun.DoesNotExist:
            raise CommandError(f"{user.get_username()} has no evaluation {run_id} (give --user).") from None
        try:
            return services.run_reopen(run=run, budget=budget)
        except EvaluationInvalid as error:
            raise CommandError(str(error)) from None

    def _create(self, user: Any, options: dict[str, Any]) -> EvalRun:
        source = options["tasks"]
        if not source:
            raise CommandError(
                "Give --tasks FILE (DRACO-format JSONL) or --tasks sample, or --resume RUN_ID."
            )
        if source == "sample":
            task_set = services.taskset_sample_load(owner=user)
        else:
            path = Path(source)
            try:
                text = text_decode(path.read_bytes())
                task_set = services.taskset_import(owner=user, name=path.stem, text=text)
            except OSError as error:
                raise CommandError(f"Cannot read {source}: {error.strerror}") from None
            except TaskSetInvalid as error:
                lines = "\n".join(f"  {line}" for line in error.errors)
                raise CommandError(
                    f"{source}: nothing imported, {len(error.errors)} problem(s):\n{lines}"
                ) from None
        try:
            plan = services.run_plan(
                owner=user,
                task_set=task_set,
                contender_specs=options["contender"],
                grader=options["grader"],
                limit=options["limit"],
                seed=options["seed"],
                concurrency=options["concurrency"],
                budget=options["budget"],
            )
        except EvaluationInvalid as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self._estimate_text(plan))
        if plan.budget is not None and plan.estimate_low is not None and plan.estimate_low > plan.budget:
            raise CommandError(
                f"The estimate (at least ${plan.estimate_low:.4f}) is over the ${plan.budget:.2f} budget."
            )
        return services.run_create(owner=user, plan=plan)

    def _estimate_text(self, plan: services.RunPlan) -> str:
        lines = [f"{len(plan.tasks)} tasks x {len(plan.contenders)} contenders, graded by {plan.grader}"]
        if plan.grader_is_demo:
            lines[0] += " (demo)"
        if plan.estimate_low is None:
            lines.append("Estimate: unknown (a price is not in the catalog)")
        else:
            lines.append(
                f"Estimate: about ${plan.estimate_low:.4f} (typical answers), "
                f"at most ${plan.estimate_high or 0:.4f} (every call at its token cap)"
            )
        if plan.budget is not None:
            lines.append(f"Budget cap: ${plan.budget:.2f}")
        return "\n".join(lines) + "\n"


async def _evaluate(runner: EvalRunner, bar: ProgressBar) -> None:
    from apps.providers.http import shared_client_close

    async def redraw() -> None:
        # Also between tasks, so time left and cost move while a slow answer is written.
        while True:
            bar.draw(runner)
            await asyncio.sleep(0.5)

    painter = asyncio.create_task(redraw())
    try:
        await runner.run()
    finally:
        painter.cancel()
        bar.draw(runner)
        await shared_client_close()
        # The runner's queries ran on the ORM's thread for this loop: close its connection with the loop.
        await database_sync_to_async(connections.close_all)()
        sys.stdout.flush()
