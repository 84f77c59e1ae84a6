"""The settings the tests run with: the app's own, in development mode unless the environment says otherwise.

``make test`` exports ``DEBUG=1``; this keeps a bare ``python -m pytest`` in a new shell the same. Settings
that tests change are changed per test (pytest-django's ``settings`` fixture); production settings are tested
in fresh interpreters (tests/security/test_production_settings.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "1")

from fusionroom.settings import *  # noqa: F403
