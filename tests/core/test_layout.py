"""The base layout every page shares: navigation, accessibility hooks, htmx set up to live under the CSP."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client, RequestFactory
from django.urls import reverse

from apps.core.context_processors import navigation
from apps.core.views import landing

pytestmark = pytest.mark.django_db


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_every_script_is_a_deferred_file_from_this_site(client: Client) -> None:
    body = _page(client, reverse("login"))
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts, "the page loads htmx and markdown.js"
    for tag in scripts:
        src = re.search(r'src="([^"]+)"', tag)
        assert src and src.group(1).startswith("/static/"), tag
        assert " defer" in tag, tag
    assert re.search(r"<script\b[^>]*>(?!</script>)", body) is None, "no inline script body"
    assert "/static/django_htmx/htmx-2.min.js" in body
    assert "/static/js/markdown.js" in body


def test_htmx_is_configured_for_a_strict_csp(client: Client) -> None:
    body = _page(client, reverse("login"))
    match = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", body)
    assert match
    config = json.loads(match.group(1))
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["historyCacheSize"] == 0


def test_htmx_requests_carry_the_csrf_token(client: Client) -> None:
    body = _page(client, reverse("login"))
    match = re.search(r"<body[^>]*hx-headers='([^']+)'", body)
    assert match
    token = json.loads(match.group(1))["X-CSRFToken"]
    assert len(token) >= 32
    assert client.cookies["csrftoken"].value


def test_it_has_a_skip_link_a_main_landmark_and_a_live_region(client: Client) -> None:
    body = _page(client, reverse("login"))
    assert '<a class="skip-link" href="#main">Skip to content</a>' in body
    assert '<main id="main"' in body
    assert 'id="live-status" class="visually-hidden" role="status" aria-live="polite"' in body
    assert '<html lang="en" ' in body
    assert 'name="viewport"' in body


def test_anonymous_visitors_get_log_in_and_sign_up_links_but_no_app_nav(client: Client) -> None:
    body = _page(client, reverse("login"))
    assert f'href="{reverse("signup")}"' in body
    assert 'aria-label="Main"' not in body
    assert "Log out" not in body


def test_signed_in_users_get_the_app_nav_with_the_current_section_marked(client: Client) -> None:
    client.force_login(User.objects.create_user("alice", password="x-long-passphrase"))
    body = _page(client, reverse("chat:home"))
    nav = re.search(r'<nav class="mainnav" aria-label="Main">(.*?)</nav>', body, re.S)
    assert nav
    links = re.findall(r'<a href="([^"]+)"( aria-current="page")?>([^<]+)</a>', nav.group(1))
    assert [(label, bool(current)) for _, current, label in links] == [
        ("Chat", True),
        ("Panels", False),
        ("Evaluations", False),
        ("API keys", False),
    ]
    assert 'data-testid="current-user">alice<' in body


def test_the_longest_matching_nav_item_is_current() -> None:
    request = RequestFactory().get("/panels/3/edit/")
    request.user = User(username="alice")
    items = navigation(request)["nav_items"]
    assert [item.label for item in items if item.current] == ["Panels"]


def test_django_messages_are_shown(client: Client) -> None:
    client.post(
        reverse("signup"),
        {"username": "carol", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    body = _page(client, reverse("chat:home"))
    assert '<div class="messages" role="status">' in body
    assert '<p class="message message-success">Welcome to Fusion Room, carol.</p>' in body


def test_the_landing_page_explains_the_product_and_links_to_sign_up_and_log_in() -> None:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    response = landing(request)
    body = response.content.decode()
    assert response.status_code == 200
    assert "panel" in body and "judge" in body and "writer" in body
    assert f'href="{reverse("signup")}"' in body
    assert f'href="{reverse("login")}"' in body


def test_anonymous_visitors_get_the_landing_page_at_the_root(client: Client) -> None:
    body = _page(client, "/")
    assert "Ask a panel of models, get one answer you can check" in body
    assert f'href="{reverse("signup")}"' in body
