from __future__ import annotations

import pytest

from apps.panels.models import Panel, PanelMember
from apps.panels.presets import sync_preset_rows

pytest_plugins = ["tests.fakes.fixtures", "tests.live_server"]


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
