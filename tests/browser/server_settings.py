"""Settings of the browser tests' Daphne process: the app's own, plus pages that exist only for tests."""

from __future__ import annotations

from fusionroom.settings import *  # noqa: F403
from fusionroom.settings import BASE_DIR, TEMPLATES

ROOT_URLCONF = "tests.browser.server_urls"
TEMPLATES = [{**TEMPLATES[0], "DIRS": [BASE_DIR / "templates", BASE_DIR / "tests" / "browser" / "templates"]}]
