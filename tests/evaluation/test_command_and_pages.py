"""``manage.py evaluate`` end to end on the demo models, and the pages it leaves: results, per task, exports,
share links; every page and action is the owner's alone."""

from __future__ import annotations

import csv
import io
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from apps.evaluation.models import Answer, EvalRun, EvalShareLink, Verdict


def evaluate(*args: str) -> str:
    out = StringIO()
    call_command("evaluate", *args, stdout=out, no_color=True)
    return out.getvalue()


@pytest.fixture
def demo_run(settings: Any, transactional_db: None, tmp_path: Path) -> tuple[EvalRun, str, Path]:
    settings.DEMO_MODEL_DELAY = 0
    settings.OPENROUTER_API_KEY = ""
    out = tmp_path / "results.json"
    output = evaluate(
        "--tasks", "sample",
        "--contender", "preset:demo",
        "--contender", "model:demo/atlas",
        "--limit", "3",
        "--concurrency", "3",
        "--user", "alice",
        "--out", str(out),
    )  # fmt: skip
    return EvalRun.objects.get(), output, out


def test_the_command_runs_the_demo_contenders_and_prints_and_writes_the_results(
    demo_run: tuple[EvalRun, str, Path],
) -> None:
    run, output, out = demo_run

    assert run.status == EvalRun.Status.DONE and run.owner.username == "alice"
    assert "graded by demo/grader (demo)" in output
    assert "[########################] 3/3 Demo (offline) (preset)" in output
    table = output[output.index("Contender ") :]
    assert "Score (95% CI)" in table and "Factual accuracy" in table and "p90" in table
    assert "\nDemo (offline) (preset) " in table and "\ndemo/atlas (demo) " in table
    assert "Demo (offline) (preset) vs demo/atlas (demo):" in output
    data = json.loads(out.read_text())
    assert [c["contender"] for c in data["contenders"]] == ["preset:demo", "model:demo/atlas"]
    assert all(c["n"] == 3 and c["is_demo"] for c in data["contenders"])
    assert data["evaluation"]["grader_is_demo"] is True and len(data["tasks"]) == 3
    assert Answer.objects.count() == 6
    criteria = sum(task.criteria.count() for task in run.task_set.tasks.filter(pk__in=run.task_ids))
    assert Verdict.objects.count() == 2 * criteria


def test_the_command_refuses_a_bad_file_listing_its_lines(transactional_db: None, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x"}\nnot json\n', encoding="utf-8")

    with pytest.raises(CommandError) as caught:
        evaluate("--tasks", str(path), "--contender", "model:demo/atlas")

    assert "nothing imported, 2 problem(s)" in str(caught.value)
    assert "line 1: " in str(caught.value) and "line 2: not valid JSON" in str(caught.value)


def test_the_command_refuses_an_unknown_contender(transactional_db: None, settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    with pytest.raises(CommandError, match="OPENROUTER_API_KEY"):
        evaluate("--tasks", "sample", "--contender", "model:openai/gpt-5.4-mini")
    with pytest.raises(CommandError, match="No preset called 'nope'"):
        evaluate("--tasks", "sample", "--contender", "preset:nope")
    with pytest.raises(CommandError, match="'Budget' cannot run here"):
        evaluate("--tasks", "sample", "--contender", "preset:budget")
    assert not EvalRun.objects.exists()


def test_resume_finishes_a_stopped_run_without_answering_again(demo_run: tuple[EvalRun, str, Path]) -> None:
    run, _output, _out = demo_run
    answers = dict(Answer.objects.values_list("pk", "created_at"))
    total = Verdict.objects.count()
    # As if the process had died after half the verdicts were written.
    Verdict.objects.filter(pk__in=list(Verdict.objects.values_list("pk", flat=True)[: total // 2])).delete()
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.INTERRUPTED)

    output = evaluate("--resume", str(run.pk), "--user", "alice")

    run.refresh_from_db()
    assert run.status == EvalRun.Status.DONE
    assert dict(Answer.objects.values_list("pk", "created_at")) == answers
    assert Verdict.objects.count() == total
    assert "[########################] 3/3 demo/atlas (demo)" in output


def test_resume_refuses_a_finished_run(demo_run: tuple[EvalRun, str, Path]) -> None:
    run, _output, _out = demo_run

    with pytest.raises(CommandError, match="only a stopped one can be resumed"):
        evaluate("--resume", str(run.pk), "--user", "alice")


def test_the_owner_sees_the_table_the_chart_a_task_and_exports(demo_run: tuple[EvalRun, str, Path]) -> None:
    run, _output, _out = demo_run
    client = Client()
    client.force_login(run.owner)

    page = client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert 'data-testid="results-table"' in page and 'data-testid="score-cost-chart"' in page
    assert page.count('data-testid="chart-point"') == 2
    assert "demo</span>" in page and "95% CI" in page
    task_id = run.task_ids[0]
    task_page = client.get(reverse("evaluation:task", args=[run.pk, task_id])).content.decode()
    assert task_page.count('data-testid="task-answer"') == 2
    assert "MET" in task_page and "Demo grader:" in task_page
    rows = list(
        csv.reader(io.StringIO(client.get(reverse("evaluation:export_csv", args=[run.pk])).content.decode()))
    )
    assert rows[0][:6] == ["contender", "demo", "task", "domain", "status", "score"] and len(rows) == 7
    exported = client.get(reverse("evaluation:export_json", args=[run.pk])).json()
    assert exported["evaluation"]["id"] == run.pk


def _urls(run: EvalRun, link: EvalShareLink) -> list[tuple[str, str]]:
    task = run.task_ids[0]
    return [
        ("get", reverse("evaluation:run", args=[run.pk])),
        ("get", reverse("evaluation:progress", args=[run.pk])),
        ("get", reverse("evaluation:task", args=[run.pk, task])),
        ("get", reverse("evaluation:export_csv", args=[run.pk])),
        ("get", reverse("evaluation:export_json", args=[run.pk])),
        ("post", reverse("evaluation:cancel", args=[run.pk])),
        ("post", reverse("evaluation:resume", args=[run.pk])),
        ("post", reverse("evaluation:share_create", args=[run.pk])),
        ("post", reverse("evaluation:share_revoke", args=[run.pk, link.pk])),
        ("post", reverse("evaluation:delete", args=[run.pk])),
        ("post", reverse("evaluation:taskset_delete", args=[run.task_set_id])),
    ]


def test_someone_else_gets_a_404_on_every_page_and_action_and_changes_nothing(
    demo_run: tuple[EvalRun, str, Path],
) -> None:
    run, _output, _out = demo_run
    link = EvalShareLink.objects.create(run=run, token_hash="x" * 64)
    bob = Client()
    bob.force_login(User.objects.create_user("bob"))

    for method, url in _urls(run, link):
        response = getattr(bob, method)(url)
        assert response.status_code == 404, (method, url, response.status_code)

    assert EvalRun.objects.filter(pk=run.pk, status=EvalRun.Status.DONE).exists()
    assert EvalShareLink.objects.get(pk=link.pk).revoked_at is None
    assert "Fusion Room sample" not in bob.get(reverse("evaluation:list")).content.decode()


def test_someone_else_cannot_plan_or_start_a_run_on_anothers_task_set_or_panel(
    demo_run: tuple[EvalRun, str, Path],
) -> None:
    from apps.panels.models import Panel, PanelMember

    run, _output, _out = demo_run
    alices_panel = Panel.objects.create(
        owner=run.owner, name="Alice's", slug="alices", judge_model="demo/judge", writer_model="demo/writer"
    )
    PanelMember.objects.create(panel=alices_panel, position=1, model_id="demo/atlas")
    bob = Client()
    bob.force_login(User.objects.create_user("bob"))
    runs_before = EvalRun.objects.count()
    form = {"grader": "demo/grader", "concurrency": 1, "models": "demo/atlas"}

    on_alices_set = {**form, "task_set": run.task_set_id}
    estimate = bob.post(reverse("evaluation:estimate"), on_alices_set, headers={"HX-Request": "true"})
    assert "Pick one of your task sets" in estimate.content.decode()
    started = bob.post(reverse("evaluation:start"), on_alices_set)
    assert started.status_code == 422 and "Pick one of your task sets" in started.content.decode()

    bob.post(reverse("evaluation:sample"))
    bobs_set = run.task_set.__class__.objects.get(owner__username="bob")
    with_alices_panel = {**form, "task_set": bobs_set.pk, "contenders": [f"panel:{alices_panel.pk}"]}
    started = bob.post(reverse("evaluation:start"), with_alices_panel)
    assert started.status_code == 422 and "not one of the available choices" in started.content.decode()
    assert EvalRun.objects.count() == runs_before
    assert "Alice&#x27;s" not in started.content.decode()


def test_a_share_link_shows_the_results_read_only_until_revoked(demo_run: tuple[EvalRun, str, Path]) -> None:
    run, _output, _out = demo_run
    owner = Client()
    owner.force_login(run.owner)
    panel = owner.post(reverse("evaluation:share_create", args=[run.pk]), headers={"HX-Request": "true"})
    url = panel.content.decode().split('value="', 1)[1].split('"', 1)[0]
    revoke = reverse("evaluation:share_revoke", args=[run.pk, EvalShareLink.objects.get(run=run).pk])
    assert "can read these results (every answer and verdict), but change nothing" in panel.content.decode()
    assert f'hx-post="{revoke}"' in panel.content.decode()
    token = url.rstrip("/").rsplit("/", 1)[1]

    visitor = Client()
    shared = visitor.get(reverse("evaluation:shared", args=[token]))
    assert shared.status_code == 200 and shared["Referrer-Policy"] == "no-referrer"
    body = shared.content.decode()
    assert 'data-testid="results-table"' in body and "Resume" not in body and "Delete" not in body
    assert visitor.get(reverse("evaluation:shared_task", args=[token, run.task_ids[0]])).status_code == 200

    link = EvalShareLink.objects.get(run=run)
    assert link.token_hash != token
    owner.post(reverse("evaluation:share_revoke", args=[run.pk, link.pk]))
    assert visitor.get(reverse("evaluation:shared", args=[token])).status_code == 404


@pytest.mark.django_db
def test_the_page_imports_a_file_or_lists_every_bad_line_and_imports_nothing() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.evaluation.models import TaskSet

    client = Client()
    client.force_login(User.objects.create_user("uploader"))
    good = json.dumps(
        {
            "id": "t1",
            "domain": "d",
            "problem": "Why?",
            "answer": json.dumps(
                {"sections": [{"id": "s", "criteria": [{"id": "c", "weight": 1, "requirement": "R"}]}]}
            ),
        }
    )
    bad = SimpleUploadedFile("bad.jsonl", f"{good}\n{{oops\n{good}\n".encode())

    response = client.post(reverse("evaluation:import"), {"file": bad})

    assert response.status_code == 422
    body = response.content.decode()
    assert "Nothing was imported: 2 problems." in body
    assert "line 2: not valid JSON" in body and "line 3: id &#x27;t1&#x27; already used on line 1" in body
    assert not TaskSet.objects.exists()

    response = client.post(
        reverse("evaluation:import"), {"file": SimpleUploadedFile("mine.jsonl", good.encode())}
    )
    assert response.status_code == 302
    assert TaskSet.objects.get().name == "mine"


@pytest.mark.django_db
def test_the_estimate_is_shown_before_starting(settings: Any) -> None:
    settings.OPENROUTER_API_KEY = ""
    client = Client()
    user = User.objects.create_user("planner")
    client.force_login(user)
    client.post(reverse("evaluation:sample"))
    task_set = user.task_sets.get()

    response = client.post(
        reverse("evaluation:estimate"),
        {
            "task_set": task_set.pk,
            "contenders": ["preset:demo"],
            "models": "demo/atlas",
            "grader": "demo/grader",
            "limit": 5,
            "concurrency": 4,
            "budget": "1.00",
        },
    )

    body = response.content.decode()
    assert "5 tasks \u00d7 2 contenders" in body
    assert "$0 (demo models and the demo grader cost nothing)" in body
    assert "Budget cap $1.00" in body
    refused = client.post(
        reverse("evaluation:estimate"), {"task_set": task_set.pk, "grader": "demo/grader", "concurrency": 4}
    )
    assert "Choose at least one contender." in refused.content.decode()
