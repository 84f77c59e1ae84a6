"""The README's terminal commands work as written, pasted into a new shell where nothing is exported.

Each ``.venv/bin/python ...`` line of the README's shell blocks runs through bash, in README order, with an
environment stripped of every setting a developer's shell or ``make`` may have exported. Only what points the
commands away from this machine's own files and the network is added: the test database and a loopback
OpenRouter. Lines with a placeholder to fill in (``<prefix>``) are left out; the line that exports them too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tests.fakes.upstream import FakeUpstream
from tests.live_server import database_url

ROOT = Path(__file__).resolve().parents[2]
# What a developer's shell or `make` may have exported; a new shell has none of it.
EXPORTED = {
    "DEBUG",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "OPENROUTER_API_KEY",
    "REDIS_URL",
    "DATABASE_URL",
}
# Set for the commands, so a README line that runs these very tests does not run them again and again.
INSIDE = "FUSIONROOM_README_COMMAND"
SHELL_BLOCK = re.compile(r"^ *```sh\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def readme_python_commands() -> list[str]:
    blocks = SHELL_BLOCK.findall((ROOT / "README.md").read_text())
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    runnable = re.compile(r"^(?:[A-Z_]+=\S+ )*\.venv/bin/python ")
    return [line for line in lines if runnable.match(line) and "<" not in line.split("#")[0]]


def clean_environment(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in EXPORTED}, **extra}


def test_the_readme_shows_the_terminal_commands_this_test_runs() -> None:
    commands = readme_python_commands()
    assert any("manage.py fuse" in command and "--preset demo" in command for command in commands)
    assert any("manage.py apikey create" in command for command in commands)
    assert any("-m pytest" in command for command in commands)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_every_readme_command_runs_in_a_new_shell(fake_upstream_thread: FakeUpstream) -> None:
    if os.environ.get(INSIDE):
        pytest.skip("already inside a README command")
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("the README's commands name the project's .venv, which is not running these tests")
    get_user_model().objects.create_user("alice")  # the README's example user
    env = clean_environment(
        DATABASE_URL=database_url(),
        DEMO_MODEL_DELAY="0",
        OPENROUTER_BASE_URL=fake_upstream_thread.base_url,
        **{INSIDE: "1"},
    )
    for command in readme_python_commands():
        if "-m pytest" in command and "tests/" not in command:
            # The whole suite inside itself would take as long again: one quick test shows it starts.
            command = f"{command} tests/test_smoke.py"
        result = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr, command


def test_the_server_still_refuses_to_start_without_a_secret_key() -> None:
    # The development default belongs to manage.py and the tests, not to the server process.
    env = clean_environment()
    result = subprocess.run(
        [sys.executable, "-c", "import fusionroom.asgi"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_manage_py_with_a_secret_key_keeps_debug_off() -> None:
    env = clean_environment(SECRET_KEY="x" * 60, ALLOWED_HOSTS="fusion.example.com")
    code = "from django.conf import settings; print(settings.DEBUG)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
