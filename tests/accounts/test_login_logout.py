"""Log-in and log-out, the redirects around them, and that createsuperuser still works."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase"


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password=PASSWORD)


def test_the_login_page_links_to_signup(client: Client) -> None:
    body = client.get(reverse("login")).content.decode()
    assert 'autocomplete="current-password"' in body
    assert f'href="{reverse("signup")}"' in body


def test_it_logs_in_and_redirects_to_the_chatroom(client: Client, alice: User) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_it_shows_an_error_for_a_wrong_password(client: Client, alice: User) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body
    assert "Please enter a correct username and password." in body
    assert "_auth_user_id" not in client.session


def test_it_follows_a_same_site_next_and_ignores_a_foreign_one(client: Client, alice: User) -> None:
    url = reverse("login")
    same_site = client.post(url, {"username": "alice", "password": PASSWORD, "next": "/panels/"})
    assert same_site["Location"] == "/panels/"
    client.logout()
    foreign = client.post(url, {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"})
    assert foreign["Location"] == reverse("chat:home")


def test_signed_in_users_are_sent_away_from_login(client: Client, alice: User) -> None:
    client.force_login(alice)
    response = client.get(reverse("login"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")


def test_logout_is_a_post_that_ends_the_session(client: Client, alice: User) -> None:
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session


def test_the_page_offers_log_out_as_a_form_to_signed_in_users(client: Client, alice: User) -> None:
    client.force_login(alice)
    body = client.get(reverse("signup"), follow=True).content.decode()
    assert f'<form method="post" action="{reverse("logout")}">' in body
    assert 'data-testid="current-user">alice<' in body


def test_createsuperuser_still_works(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", interactive=False, username="root", email="root@example.com", verbosity=0)
    root = User.objects.get(username="root")
    assert root.is_superuser and root.is_staff
    assert client.login(username="root", password=PASSWORD)
