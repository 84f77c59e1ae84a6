"""The evaluation runner's overhead: 100 tasks x 3 contenders against the loopback upstream, verdicts written.

``python -m bench --only evaluation`` (or ``python -m bench.evaluation --tasks 100 --concurrency 32``). A
fresh SQLite file, the loopback OpenRouter (``tests/fakes/upstream.py``) in a process of its own with three
answering models and a grader, each with a fixed latency; a synthetic task set of ``--tasks`` tasks with
``--criteria`` criteria each.

First each kind of call is timed alone (an answer of each model, a verdict), a few times, median. Every call
holds one of the ``concurrency`` slots for its whole length, so the ideal time of the run is the sum of every
call's time alone divided by the concurrency (the pairs' critical paths, answer then verdicts, packed into the
slots with no gap). Then the whole run is timed, from start to the last verdict written to the database, and
the ratio to the ideal is printed; the target is 1.10 or less. Last, the same number of calls is made at the
same concurrency with no runner and no database (all independent, so perfectly packable): on a loaded machine
every call is slower than alone, and the runner's ratio to this bare figure is its own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.process
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import _free_port

TASKS = 100
CRITERIA = 8
CONCURRENCY = 32
ANSWER_LATENCY_S = 1.0
VERDICT_LATENCY_S = 0.25
MODELS = ("fake/alpha", "fake/beta", "fake/gamma")
GRADER = "fake/grader"
TARGET = 1.10


def _tasks_text(tasks: int, criteria: int) -> str:
    lines = []
    for t in range(1, tasks + 1):
        rubric = {
            "sections": [
                {
                    "id": "factual-accuracy",
                    "title": "Factual accuracy",
                    "criteria": [
                        {
                            "id": f"c{c}",
                            "weight": -1 if c == criteria else 1,
                            "requirement": f"Requirement {c}.",
                        }
                        for c in range(1, criteria + 1)
                    ],
                }
            ]
        }
        problem = f"Benchmark task {t}: explain the trade-offs of option {t} in two paragraphs."
        lines.append(
            json.dumps({"id": f"b{t}", "domain": "bench", "problem": problem, "answer": json.dumps(rubric)})
        )
    return "\n".join(lines)


def _serve_upstream(port: int) -> None:
    """The loopback OpenRouter, in a process of its own (so its work is not counted as the runner's)."""
    from tests.fakes.upstream import FakeUpstream, ModelScript

    upstream = FakeUpstream(port=port)
    answer = "A benchmark answer. " * 40
    for model in MODELS:
        upstream.script(model, ModelScript(text=answer, latency_s=ANSWER_LATENCY_S, cost=0.0))
    verdict = json.dumps({"verdict": "MET", "reason": "Benchmark."})
    upstream.script(GRADER, ModelScript(text=verdict, latency_s=VERDICT_LATENCY_S, cost=0.0))

    async def serve() -> None:
        await upstream.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def _setup(database: Path) -> multiprocessing.process.BaseProcess:
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve_upstream, args=(port,), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("the loopback upstream did not start") from None
            time.sleep(0.1)
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["OPENROUTER_API_KEY"] = "sk-bench"
    os.environ["OPENROUTER_BASE_URL"] = f"http://127.0.0.1:{port}/api/v1"
    os.environ["EVALUATION_HEARTBEAT_SECONDS"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return process


async def _alone(repeats: int) -> tuple[dict[str, float], float]:
    """Each model's answer and one verdict, each timed alone: the medians."""
    from apps.evaluation.contenders import contender_answer
    from apps.evaluation.grading import CriterionText, grade
    from apps.providers.http import shared_client_close
    from apps.providers.registry import gateway_from_settings

    gateway = gateway_from_settings()
    answers: dict[str, float] = {}
    for model in MODELS:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            await contender_answer(kind="model", ref=model, snapshot={}, prompt="Alone?", gateway=gateway)
            times.append(time.perf_counter() - started)
        answers[model] = statistics.median(times)
    times = []
    criterion = CriterionText("c1", 1, "Requirement 1.")
    for _ in range(repeats):
        started = time.perf_counter()
        await grade(
            gateway=gateway, grader=GRADER, problem="Alone?", response="An answer.", criterion=criterion
        )
        times.append(time.perf_counter() - started)
    await shared_client_close()
    return answers, statistics.median(times)


async def _run(run_id: int) -> float:
    from apps.evaluation.runner import EvalRunner
    from apps.providers.http import shared_client_close

    started = time.perf_counter()
    cpu = time.process_time()
    await EvalRunner(run_id=run_id).run()  # returns after its last verdicts are written
    wall = time.perf_counter() - started
    print(f"this process's CPU during the run: {time.process_time() - cpu:.2f} s")
    await shared_client_close()
    return wall


async def _bare(*, answers: int, verdicts: int, concurrency: int) -> float:
    """The same calls at the same concurrency with no runner and no database: what the machine and the
    transport allow right now (a loaded machine slows every call; this separates that from the runner)."""
    from apps.evaluation.contenders import contender_answer
    from apps.evaluation.grading import CriterionText, grade
    from apps.providers.http import shared_client_close
    from apps.providers.registry import gateway_from_settings

    gateway = gateway_from_settings()
    slots = asyncio.Semaphore(concurrency)
    criterion = CriterionText("c1", 1, "Requirement 1.")

    async def answer(model: str) -> None:
        async with slots:
            await contender_answer(kind="model", ref=model, snapshot={}, prompt="Bare?", gateway=gateway)

    async def verdict() -> None:
        async with slots:
            await grade(
                gateway=gateway, grader=GRADER, problem="Bare?", response="An answer.", criterion=criterion
            )

    calls = [answer(MODELS[i % len(MODELS)]) for i in range(answers)] + [verdict() for _ in range(verdicts)]
    started = time.perf_counter()
    await asyncio.gather(*calls)
    wall = time.perf_counter() - started
    await shared_client_close()
    return wall


def bench(*, tasks: int, criteria: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        upstream = _setup(Path(folder) / "bench.sqlite3")
        try:
            from django.contrib.auth import get_user_model

            from apps.evaluation import services
            from apps.evaluation.models import EvalRun, Verdict

            owner = get_user_model().objects.create_user("bench")
            task_set = services.taskset_import(owner=owner, name="bench", text=_tasks_text(tasks, criteria))
            plan = services.run_plan(
                owner=owner,
                task_set=task_set,
                contender_specs=[f"model:{model}" for model in MODELS],
                grader=GRADER,
                concurrency=concurrency,
            )
            run = services.run_create(owner=owner, plan=plan)
            answer_alone, verdict_alone = asyncio.run(_alone(3))
            wall = asyncio.run(_run(run.pk))
            bare = asyncio.run(
                _bare(
                    answers=tasks * len(MODELS),
                    verdicts=tasks * len(MODELS) * criteria,
                    concurrency=concurrency,
                )
            )
            run.refresh_from_db()
            verdicts = Verdict.objects.filter(answer__run=run).count()
        finally:
            upstream.kill()
            upstream.join()
    answers = tasks * len(MODELS)
    slot_seconds = tasks * sum(answer_alone.values()) + answers * criteria * verdict_alone
    ideal = slot_seconds / concurrency
    ratio = wall / ideal
    alone = ", ".join(f"{model} {seconds:.3f} s" for model, seconds in answer_alone.items())
    print(f"calls alone (median of 3): answers {alone}; a verdict {verdict_alone:.3f} s")
    print(
        f"{tasks} tasks x {len(MODELS)} contenders x {criteria} criteria, concurrency {concurrency}: "
        f"{answers} answers and {verdicts} verdicts written ({run.status})"
    )
    verdict_ok = "within" if ratio <= TARGET else "OVER"
    print(
        f"wall {wall:.2f} s, ideal {ideal:.2f} s (sum of calls alone / concurrency): {ratio:.3f}x, "
        f"{verdict_ok} the {TARGET:.2f}x target"
    )
    print(
        f"the same calls at concurrency {concurrency} with no runner and no database: {bare:.2f} s "
        f"({bare / ideal:.3f}x the ideal); the runner's wall is {wall / bare:.3f}x that"
    )
    if run.status != EvalRun.Status.DONE or verdicts != answers * criteria:
        raise SystemExit("the benchmark run did not finish every verdict")


def run() -> None:
    # In a process of its own: it configures Django for a SQLite file of its own, and an earlier section of
    # ``python -m bench`` may already have configured this one (with ``DATABASE_URL``'s database).
    subprocess.run(
        [sys.executable, "-m", "bench.evaluation"], cwd=Path(__file__).resolve().parent.parent, check=True
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluation", description=__doc__)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--criteria", type=int, default=CRITERIA)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    bench(tasks=args.tasks, criteria=args.criteria, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
