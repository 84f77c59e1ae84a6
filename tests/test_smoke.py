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
