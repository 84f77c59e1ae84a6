"""Sign-up: a new account is created, signed in and sent to the chatroom; bad input is shown on the form."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase"


def _signup(
    client: Client,
    username: str = "alice",
    password1: str = PASSWORD,
    password2: str = PASSWORD,
    **extra: str,
) -> Any:
    data = {"username": username, "password1": password1, "password2": password2, **extra}
    return client.post(reverse("signup"), data)


def test_the_signup_page_shows_the_form_and_a_way_to_log_in(client: Client) -> None:
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    body = response.content.decode()
    for name in ("username", "password1", "password2"):
        assert f'name="{name}"' in body
    assert 'autocomplete="new-password"' in body
    assert f'href="{reverse("login")}"' in body


def test_it_creates_the_account_signs_in_and_redirects_to_the_chatroom(client: Client) -> None:
    response = _signup(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    user = User.objects.get(username="alice")
    assert user.check_password(PASSWORD)
    assert not user.is_staff
    assert client.session["_auth_user_id"] == str(user.pk)
    home = client.get(response["Location"])
    assert "Welcome to Fusion Room, alice." in home.content.decode()


def test_it_shows_an_error_for_a_username_already_taken(client: Client) -> None:
    User.objects.create_user("alice", password="whatever-else-123")
    response = _signup(client)
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert User.objects.filter(username="alice").count() == 1
    assert "_auth_user_id" not in client.session


def test_it_shows_an_error_when_the_passwords_differ(client: Client) -> None:
    response = _signup(client, password2=PASSWORD + "x")
    assert "The two password fields didn\u2019t match." in response.content.decode()
    assert not User.objects.exists()


def test_it_applies_the_password_validators(client: Client) -> None:
    response = _signup(client, password1="12345678", password2="12345678")
    body = response.content.decode()
    assert "This password is too common." in body
    assert "This password is entirely numeric." in body
    assert not User.objects.exists()


def test_it_keeps_the_username_typed_after_an_error(client: Client) -> None:
    response = _signup(client, username="bob", password2="different-passphrase-1")
    assert 'value="bob"' in response.content.decode()


def test_signed_in_users_are_sent_away_from_signup(client: Client) -> None:
    client.force_login(User.objects.create_user("alice", password=PASSWORD))
    response = client.get(reverse("signup"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert User.objects.count() == 1


def test_it_follows_a_same_site_next_after_signing_up(client: Client) -> None:
    response = _signup(client, next="/panels/")
    assert response["Location"] == "/panels/"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "logout", "javascript:alert(1)"]
)
def test_it_ignores_a_next_that_leaves_the_site_or_is_not_a_path(client: Client, target: str) -> None:
    response = _signup(client, next=target)
    assert response["Location"] == reverse("chat:home")


def test_it_refuses_a_post_without_the_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    response = _signup(client)
    assert response.status_code == 403
    assert not User.objects.exists()
