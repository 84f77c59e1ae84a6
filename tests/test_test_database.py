"""The test database: a file of this run's own (two runs in one tree at once must not share one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.django_db
def test_the_sqlite_test_database_belongs_to_this_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite test databases are named by the tests")
    name = Path(connection.settings_dict["NAME"])
    assert name.parent == tmp_path_factory.getbasetemp()
    assert name.exists()
    assert name.resolve() != (settings.BASE_DIR / "test-db.sqlite3").resolve()
