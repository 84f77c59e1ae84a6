"""The colour theme: chosen with one button, rendered from the first byte, kept per person and per browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.accounts.models import Preference

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase"


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password=PASSWORD)


def html_theme(client: Client, path: str = "/") -> str:
    body = client.get(path).content.decode()
    start = body.index('<html lang="en" data-theme="') + len('<html lang="en" data-theme="')
    return body[start : body.index('"', start)]


def test_a_page_follows_the_system_until_a_theme_is_chosen(client: Client) -> None:
    assert html_theme(client, reverse("login")) == "system"
    assert '<meta name="color-scheme" content="light dark">' in client.get(reverse("login")).content.decode()


def test_a_signed_in_choice_is_stored_and_follows_the_person_to_another_browser(
    client: Client, alice: User
) -> None:
    client.force_login(alice)
    response = client.post(reverse("theme"), {"theme": "dark"}, headers={"X-Requested-With": "fetch"})
    assert response.status_code == 204
    assert Preference.objects.get(user=alice).theme == "dark"
    assert html_theme(client) == "dark"
    elsewhere = Client()
    elsewhere.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert html_theme(elsewhere) == "dark"
    assert '<meta name="color-scheme" content="dark">' in elsewhere.get("/").content.decode()


def test_a_choice_made_before_signing_in_is_kept_in_the_browser_only(client: Client) -> None:
    response = client.post(reverse("theme"), {"theme": "light", "next": reverse("login")})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert response.cookies["theme"].value == "light"
    assert html_theme(client, reverse("login")) == "light"
    assert not Preference.objects.exists()


def test_an_unknown_theme_is_refused(client: Client) -> None:
    assert client.post(reverse("theme"), {"theme": "purple"}).status_code == 400
