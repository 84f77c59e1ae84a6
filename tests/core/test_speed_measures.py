"""Speed measures are on unless ``SPEED_MEASURES_OFF`` names them: how ``make bench`` prices each one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apps.core.speed import MEASURES, measure_on

ROOT = Path(__file__).resolve().parents[2]


def test_every_measure_is_on_unless_switched_off(settings: Any) -> None:
    settings.SPEED_MEASURES_OFF = frozenset()
    assert all(measure_on(name) for name in MEASURES)
    settings.SPEED_MEASURES_OFF = frozenset({"flush_batch"})
    assert not measure_on("flush_batch") and measure_on("gc_freeze")


def test_an_unknown_measure_is_a_mistake_not_a_silent_no() -> None:
    with pytest.raises(KeyError):
        measure_on("flush_batches")


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "fusionroom.settings", **env}
    environment.pop("SPEED_MEASURES_OFF", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_the_server_freezes_what_it_loaded_at_start_up_unless_told_not_to() -> None:
    code = "import gc, fusionroom.asgi; print(gc.get_freeze_count())"
    frozen = _python(code)
    assert frozen.returncode == 0, frozen.stderr
    assert int(frozen.stdout) > 10_000
    thawed = _python(code, SPEED_MEASURES_OFF="gc_freeze")
    assert thawed.returncode == 0, thawed.stderr
    assert int(thawed.stdout) == 0


def test_the_server_refuses_to_start_with_an_unknown_measure_switched_off() -> None:
    started = _python("import django; django.setup()", SPEED_MEASURES_OFF="gc_freeze,flush_batches")
    assert started.returncode != 0
    assert "SPEED_MEASURES_OFF names unknown measures flush_batches" in started.stderr
