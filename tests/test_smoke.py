from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_home_page_renders_with_htmx_served_locally(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Fusion Room" in body
    assert "unpkg.com" not in body and "cdn" not in body.lower()
    assert "htmx" in body


def test_logs_of_the_app_reach_the_tests_after_the_asgi_application_is_loaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from fusionroom.asgi import application

    assert application is not None
    logging.getLogger("apps.chat.recorder").error("seen by the test")
    assert [record.getMessage() for record in caplog.records] == ["seen by the test"]
