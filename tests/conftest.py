from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connections

from apps.panels.models import Panel, PanelMember
from apps.panels.presets import sync_preset_rows

pytest_plugins = ["tests.fakes.fixtures", "tests.live_server"]


@pytest.fixture(scope="session", autouse=True)
def _asgi_application_loaded() -> None:
    """Load the ASGI application before any test captures logs.

    Loading it runs ``django.setup()`` again, which applies ``LOGGING`` and so replaces the root logger's
    handlers, pytest's capture handler among them: a test that loaded it first would see no log record at
    all, and its "nothing was logged" assertions could not fail.
    """
    import fusionroom.asgi  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test databases, whose teardown first closes what async tests left open.

    An async test's ``sync_to_async`` calls run on asgiref's one shared thread, and a connection opened there
    stays open (only Channels' ``database_sync_to_async`` closes its own). PostgreSQL refuses to drop a
    database that a session still uses, so the test database would outlive the run.
    """
    yield
    # From a thread of its own: the browser tests leave Playwright's event loop running in this one.
    closer = threading.Thread(target=lambda: asyncio.run(sync_to_async(connections.close_all)()))
    closer.start()
    closer.join(timeout=30)


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> Iterator[None]:
    """Each test gets channel layers of its own.

    Every test runs in a new event loop, and a channel layer keeps loop-bound state (channels-redis: its
    receive lock and connection pools). A layer left from an earlier test's loop, with a receive still pending
    when that loop closed, would fail every later receive with "bound to a different event loop". A server
    process has one loop for its lifetime, so this only concerns tests.
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _preset_panels(request: pytest.FixtureRequest) -> None:
    """Every transactional test starts with the preset panels in place.

    Transactional tests empty every table when they end, migration data included. Putting the presets back is
    cheaper and order-independent, unlike serialized rollback, which clashes with the content types that other
    transactional tests let post_migrate recreate.
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    if not Panel.objects.filter(owner=None).exists():
        sync_preset_rows(Panel, PanelMember)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A SQLite test database of this run's own, in the run's temporary directory.

    Two runs in the same tree at once must not share one file: each would drop and rewrite the other's tables.
    A file, not SQLite's in-memory default, because the live server (tests/live_server.py) opens the same
    database from another process. pytest removes the directories of older runs.
    """
    names = []
    for alias, database in settings.DATABASES.items():
        if database["ENGINE"] == "django.db.backends.sqlite3":
            name = tmp_path_factory.getbasetemp() / f"test-db-{alias}.sqlite3"
            database.setdefault("TEST", {})["NAME"] = str(name)
            names.append(name)
    yield
    # Django deletes the database file; connections other threads left open leave its WAL files behind.
    for name in names:
        if not name.exists():
            for suffix in ("-wal", "-shm", "-journal"):
                name.with_name(name.name + suffix).unlink(missing_ok=True)
