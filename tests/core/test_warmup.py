"""A new worker loads at start-up what its first runs would otherwise load on the event loop."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apps.chat import rendering
from fusionroom import warmup

ROOT = Path(__file__).resolve().parents[2]
# What each lazy path imports first: the URLconf (a finished turn's ``{% url %}``), the template tag libraries
# (the first snapshot), anyio's asyncio backend (the first upstream request).
LAZY = {
    "URLconf": "apps.api.views",
    "template tags": "apps.comparisons.templatetags.comparisons",
    "anyio backend": "anyio._backends._asyncio",
}


# And the TLS context every upstream connection shares (the first model request loaded its CA bundle).
TLS_LOADED = "getattr(sys.modules.get('apps.providers.http'), '_tls_context', None) is not None"


def _loaded_after_start_up(**env: str) -> dict[str, bool]:
    loaded = (
        f"{{**{{name: module in sys.modules for name, module in {LAZY!r}.items()}}, 'TLS': {TLS_LOADED}}}"
    )
    code = f"import json, sys, fusionroom.asgi; print(json.dumps({loaded}))"
    environment = {**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "fusionroom.settings"}
    environment.pop("SPEED_MEASURES_OFF", None)
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "warm-up:" not in done.stderr, done.stderr
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def test_the_server_loads_at_start_up_what_the_first_runs_would_load_on_the_event_loop() -> None:
    assert _loaded_after_start_up() == dict.fromkeys([*LAZY, "TLS"], True)
    # Not loaded by anything else: switched off, the first runs would still pay for it.
    assert _loaded_after_start_up(SPEED_MEASURES_OFF="warm_up") == dict.fromkeys([*LAZY, "TLS"], False)


async def test_the_sample_turn_renders_on_a_loop_without_touching_the_database() -> None:
    # No database access is allowed in this test: a query would fail it, as it would block a real loop.
    rendering.warm_up()


def test_a_failed_warm_up_is_logged_and_start_up_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("template missing")

    monkeypatch.setattr(rendering, "warm_up", broken)
    with caplog.at_level(logging.WARNING, logger="fusionroom.warmup"):
        warmup.warm_up()
    assert "warm-up: the sample turn did not render" in caplog.text
