"""Every page is served with a strict Content-Security-Policy and the other security headers.

The policy is what stops an injected script or image if the sanitiser ever let one through: scripts only from
this site or with the response's nonce, no inline style, images only from this site (and data: URLs), network
connections (fetch, WebSocket) only back to this site, and the app never framed.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _policy(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/panels/", "/accounts/keys/", "/no-such-page/"]
_NEVER = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:", "ws:", "wss:"}


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("who", ["anonymous", "signed in"])
def test_every_page_has_a_strict_policy(client: Client, who: str, url: str) -> None:
    if who == "signed in":
        client.force_login(User.objects.create_user("alice", password="a-long-passphrase-1"))
    response = client.get(url)
    assert "Content-Security-Policy" in response.headers
    policy = _policy(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    for name, sources in policy.items():
        assert not _NEVER & set(sources), (name, sources)
        assert name == "img-src" or "data:" not in sources, (name, sources)


def test_script_src_is_self_plus_the_nonce_every_script_tag_carries(client: Client) -> None:
    response = client.get(reverse("login"))
    script_src = _policy(response.headers["Content-Security-Policy"])["script-src"]
    assert script_src[0] == "'self'"
    assert len(script_src) == 2 and script_src[1].startswith("'nonce-")
    nonce = script_src[1].removeprefix("'nonce-").removesuffix("'")
    assert len(nonce) >= 16
    tags = re.findall(r"<script\b[^>]*>", response.content.decode())
    assert tags
    assert all(f'nonce="{nonce}"' in tag for tag in tags), tags


def test_the_nonce_is_new_for_every_response(client: Client) -> None:
    nonces = {
        _policy(client.get(reverse("login")).headers["Content-Security-Policy"])["script-src"][1]
        for _ in range(3)
    }
    assert len(nonces) == 3


def test_the_other_security_headers_are_set(client: Client) -> None:
    response = client.get(reverse("login"))
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_session_and_csrf_cookies_are_http_only_where_it_matters(client: Client) -> None:
    User.objects.create_user("bob", password="a-long-passphrase-1")
    client.get(reverse("login"))
    response = client.post(reverse("login"), {"username": "bob", "password": "a-long-passphrase-1"})
    assert response.cookies["sessionid"]["httponly"]
    assert response.cookies["sessionid"]["samesite"] == "Lax"
