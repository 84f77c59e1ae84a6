"""A Content-Type whose parameters Django cannot read is a 400 on every URL, never a server error."""

from __future__ import annotations

import httpx
import pytest

UNREADABLE = ["application/json; charset*=bogus''x", "text/plain; name*=nonsense-8''%ff"]


@pytest.fixture
async def client() -> httpx.AsyncClient:
    from fusionroom.asgi import application

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://localhost")


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", UNREADABLE)
@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/accounts/login/", "/static/css/app.css"])
async def test_unreadable_content_type_parameters_get_a_400(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    async with client:
        response = await client.post(path, content=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert "Content-Type" in response.text


@pytest.mark.django_db
async def test_a_readable_content_type_goes_through(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.post(
            "/api/v1/chat/completions",
            content=b"{}",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 401  # on to the API, which asks for a key
