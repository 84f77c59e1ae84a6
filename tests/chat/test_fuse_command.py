"""``manage.py fuse``: one run in the terminal, with the demo preset and against a loopback OpenRouter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.chat.management.commands.fuse import fuse_request_build
from tests.fakes.upstream import FakeUpstream, ModelScript

QUESTION = "Which is better for a small team, PostgreSQL or MySQL?"
SECTIONS = ("Consensus", "Contradictions", "Partial coverage", "Unique insights", "Blind spots")


def fuse(*args: str) -> str:
    out = StringIO()
    call_command("fuse", *args, stdout=out, no_color=True)
    return out.getvalue()


@pytest.mark.django_db
@override_settings(DEMO_MODEL_DELAY=0)
def test_it_runs_the_demo_preset_end_to_end() -> None:
    output = fuse(QUESTION, "--preset", "demo")

    for seat, model in enumerate(("demo/atlas", "demo/birch", "demo/cedar"), start=1):
        assert f"[{seat} {model} (demo)] " in output
        assert f"[{seat} {model} (demo)] done" in output
    assert "[1 demo/atlas (demo)] **Recommendation:** " in output
    analysis = output[output.index("== Analysis by demo/judge (demo) ==") :]
    positions = [analysis.index(f"\n{title}\n") for title in SECTIONS]
    assert positions == sorted(positions)
    assert "      demo/birch: prefer " in analysis, "contradiction stances are listed per model"
    final = output[output.index("== Final answer by demo/writer (demo) ==") :]
    assert "### What everyone agrees on" in final and "**Bottom line:**" in final
    table = final[final.index("Step  ") :]
    for row in ("seat 1", "seat 2", "seat 3", "judge", "writer", "total"):
        assert f"\n{row} " in table
    for column in ("Tokens in", "Tokens out", "Cost", "TTFT", "Duration"):
        assert column in table
    assert "$0.000000" in table


@pytest.mark.django_db
@override_settings(DEMO_MODEL_DELAY=0)
def test_options_reach_the_run_and_bad_ones_are_refused_clearly() -> None:
    request = fuse_request_build(
        prompt="Hi",
        preset="demo",
        panel=None,
        judge=None,
        writer=None,
        overrides={"quorum": 2, "deadline_s": 30.0, "temperature": 0.3, "max_completion_tokens": 500},
    )
    assert (request.options.quorum, request.options.deadline_s) == (2, 30.0)
    assert (request.options.temperature, request.options.max_completion_tokens) == (0.3, 500)
    assert [s.model for s in request.seats] == ["demo/atlas", "demo/birch", "demo/cedar"]

    with pytest.raises(CommandError, match="quorum"):
        fuse("Hi", "--preset", "demo", "--quorum", "0")
    with pytest.raises(CommandError, match=r"No preset called 'nope'\. Presets: .*demo"):
        fuse("Hi", "--preset", "nope")
    with pytest.raises(CommandError, match="--judge is required"):
        fuse("Hi", "--panel", "demo/atlas")


@pytest.mark.django_db
def test_a_run_without_deadline_gets_the_default_and_deadline_overrides_it() -> None:
    def deadline(**overrides: float) -> float | None:
        request = fuse_request_build(
            prompt="Hi", preset="demo", panel=None, judge=None, writer=None, overrides=dict(overrides)
        )
        return request.options.deadline_s

    assert deadline() == 90
    assert deadline(deadline_s=300.0) == 300
    by_hand = fuse_request_build(
        prompt="Hi", preset=None, panel="demo/atlas", judge="demo/judge", writer=None, overrides={}
    )
    assert by_hand.options.deadline_s == 90


def test_the_writer_defaults_to_the_judge() -> None:
    request = fuse_request_build(
        prompt="Hi", preset=None, panel="demo/atlas,demo/birch", judge="demo/judge", writer=None, overrides={}
    )

    assert request.writer == "demo/judge"
    assert [(s.seat, s.model) for s in request.seats] == [(1, "demo/atlas"), (2, "demo/birch")]


@override_settings(DEMO_MODEL_DELAY=0, OPENROUTER_API_KEY="")
def test_a_failed_run_exits_non_zero_with_the_reason() -> None:
    # Every seat failed for one reason, an unknown model, so the run fails with that reason.
    with pytest.raises(CommandError, match=r"invalid_model") as caught:
        fuse("Hi", "--panel", "nobody-knows/x", "--judge", "demo/judge")

    assert caught.value.returncode == 1
    with pytest.raises(CommandError, match=r"invalid_model.*judge"):
        fuse("Hi", "--panel", "demo/atlas", "--judge", "demo/nobody")


def test_it_runs_real_openrouter_models_against_the_loopback_upstream(
    fake_upstream_thread: FakeUpstream,
) -> None:
    upstream = fake_upstream_thread
    upstream.script("fake/writer", ModelScript(text="The fused answer from the writer.", cost=0.002))
    upstream.script("fake/beta", ModelScript(error_status=503, error_message="Overloaded"))
    upstream.script("fake/alpha", ModelScript(text="Alpha says PostgreSQL.\nSecond line.", cost=0.001))

    with override_settings(
        OPENROUTER_BASE_URL=upstream.base_url, OPENROUTER_API_KEY="sk-or-test", PROVIDER_MAX_RETRIES=0
    ):
        output = fuse(
            QUESTION, "--panel", "fake/alpha,fake/beta", "--judge", "fake/judge", "--writer", "fake/writer"
        )

    assert "[1 fake/alpha] Alpha says PostgreSQL.\n" in output and "[1 fake/alpha] Second line.\n" in output
    assert "[2 fake/beta] failed (503): " in output and "Overloaded" in output
    assert "== Analysis by fake/judge ==" in output
    assert all(f"\n{title}\n" in output for title in SECTIONS)
    assert "The fused answer from the writer." in output
    assert "\nwriter  fake/writer" in output and "$0.002000" in output
    # The judge's model has no price in the catalog: the total says so instead of guessing.
    assert "unknown (at least $0.003000)" in output
    completions = upstream.completions()
    assert {r.model for r in completions} == {"fake/alpha", "fake/beta", "fake/judge", "fake/writer"}
    assert all(r.headers.get("authorization") == "Bearer sk-or-test" for r in completions)
    judge = upstream.requests_for("fake/judge")[0].body
    assert judge["temperature"] == 0 and "tools" not in judge
    assert "Alpha says PostgreSQL." in judge["messages"][-1]["content"]


def test_ctrl_c_cancels_the_run_and_exits_130() -> None:
    env = {**os.environ, "DEBUG": "1", "DEMO_MODEL_DELAY": "0.05", "OPENROUTER_API_KEY": ""}
    command = [sys.executable, "manage.py", "fuse", QUESTION, "--panel", "demo/atlas,demo/birch"]
    process = subprocess.Popen(
        [*command, "--judge", "demo/judge"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Interrupt once the panel is streaming.
    while "[1 demo/atlas (demo)]" not in process.stdout.readline():
        assert process.poll() is None
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 130
    assert "Cancelled." in err and "Traceback" not in err
    assert "== Final answer" not in out
