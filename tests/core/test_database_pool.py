"""PostgreSQL connections come from a pool: a process reuses a few instead of opening one per database call.

Channels' ``database_sync_to_async`` (every socket, run recorder and flusher call) closes the connection after
each call; without a pool each call opened a new one, which was most of a busy process's database time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def database_settings(**env: str) -> dict[str, Any]:
    """The default database's settings as a fresh interpreter reads them from this environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_CONN_MAX_AGE")}
    code = "from django.conf import settings; import json; print(json.dumps(settings.DATABASES['default']))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "fusionroom.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    settings: dict[str, Any] = json.loads(result.stdout)
    return settings


def test_postgresql_gets_a_checked_connection_pool_by_default() -> None:
    database = database_settings(DATABASE_URL="postgres://app@db.example:5432/fusion")
    assert database["OPTIONS"] == {"pool": {"min_size": 2, "max_size": 20, "timeout": 20}}
    # Django refuses a pool with persistent connections; it checks pooled connections only with health checks.
    assert database["CONN_MAX_AGE"] == 0 and database["CONN_HEALTH_CHECKS"] is True


def test_the_pool_size_is_configurable_and_persistent_connections_replace_the_pool() -> None:
    sized = database_settings(DATABASE_URL="postgres://app@db/fusion", DATABASE_POOL_SIZE="50")
    assert sized["OPTIONS"] == {"pool": {"min_size": 2, "max_size": 50, "timeout": 20}}
    kept = database_settings(DATABASE_URL="postgres://app@db/fusion", DATABASE_CONN_MAX_AGE="60")
    assert "pool" not in kept.get("OPTIONS", {}) and kept["CONN_MAX_AGE"] == 60


def test_sqlite_has_no_pool() -> None:
    database = database_settings(DATABASE_URL="sqlite:///tmp/x.sqlite3")
    assert "pool" not in database["OPTIONS"]


@pytest.mark.skipif(not POSTGRES, reason="DATABASE_URL is not PostgreSQL")
@pytest.mark.django_db(transaction=True)
async def test_consecutive_database_calls_reuse_pooled_connections() -> None:
    @database_sync_to_async
    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid: int = cursor.fetchone()[0]
        return pid

    pids = {await backend_pid() for _ in range(20)}
    # Without a pool every call is a new connection, so a new server process: 20 different pids.
    assert len(pids) <= 2, pids
