"""The API keys page as a person uses it: the new key is shown once, with a button that copies it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_new_key_comes_with_a_copy_button_for_that_field_only_once() -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_user(username="erin"))
    body = client.post("/accounts/keys/", {"name": "laptop"}).content.decode()
    key = re.search(r'id="new-key" class="new-key-value" value="(fr-[^"]+)"', body)
    assert key is not None
    assert 'data-copy-target="new-key" data-copy-status="new-key-copy-status"' in body
    assert 'id="new-key-copy-status" role="status"' in body
    again = client.get("/accounts/keys/").content.decode()
    assert key[1] not in again and "data-copy-target" not in again


def test_the_form_posts_through_htmx_and_gets_the_page_section_back() -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_user(username="fay"))
    page = client.get("/accounts/keys/").content.decode()
    assert re.search(
        r'<form method="post" class="card key-create" hx-post="/accounts/keys/" hx-target="#api-keys"', page
    )

    created = client.post("/accounts/keys/", {"name": "ci"}, headers={"HX-Request": "true"})
    assert created.status_code == 201 and 'id="api-keys"' in created.content.decode()
    assert re.search(r'id="new-key" [^>]*value="fr-[^"]+"[^>]*autofocus', created.content.decode())

    # A mistake comes back as a 200 (htmx swaps only those in) with the message next to the field.
    invalid = client.post("/accounts/keys/", {"name": ""}, headers={"HX-Request": "true"})
    assert invalid.status_code == 200 and "This field is required." in invalid.content.decode()
    assert client.post("/accounts/keys/", {"name": ""}).status_code == 400


def test_revoking_asks_first_with_htmx_and_the_key_keeps_working_until_confirmed() -> None:
    client = Client()
    user = get_user_model().objects.create_user(username="gus")
    client.force_login(user)
    client.post("/accounts/keys/", {"name": "ci <script>"})
    key = user.api_keys.get()
    page = client.get("/accounts/keys/").content.decode()
    form = re.search(rf'<form method="post" action="/accounts/keys/{key.pk}/revoke/"[^>]*>', page)
    assert form is not None
    assert (
        f'hx-post="/accounts/keys/{key.pk}/revoke/"' in form[0] and 'hx-vals=\'{"confirm": "1"}\'' in form[0]
    )
    assert 'hx-confirm="Revoke the key “ci &lt;script&gt;”? Programs using it stop working at once' in form[0]

    confirmed = client.post(
        f"/accounts/keys/{key.pk}/revoke/", {"confirm": "1"}, headers={"HX-Request": "true"}
    )
    key.refresh_from_db()
    assert confirmed.status_code == 200 and key.revoked_at is not None
    assert (
        "Key “ci &lt;script&gt;” revoked" in confirmed.content.decode()
        and 'id="api-keys"' in confirmed.content.decode()
    )


def test_without_javascript_a_revoke_gets_a_page_that_asks_and_only_its_form_revokes() -> None:
    client = Client()
    user = get_user_model().objects.create_user(username="hal")
    client.force_login(user)
    client.post("/accounts/keys/", {"name": "laptop"})
    key = user.api_keys.get()

    asked = client.post(f"/accounts/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    body = asked.content.decode()
    assert asked.status_code == 200 and key.revoked_at is None
    assert "Revoke the key “laptop”?" in body and '<input type="hidden" name="confirm" value="1">' in body
    assert 'href="/accounts/keys/">Keep it</a>' in body

    done = client.post(f"/accounts/keys/{key.pk}/revoke/", {"confirm": "1"})
    key.refresh_from_db()
    assert done.status_code == 302 and key.revoked_at is not None
    assert "Key “laptop” revoked." in client.get("/accounts/keys/").content.decode()


def test_someone_elses_key_is_not_found_even_to_be_asked_about() -> None:
    owner = get_user_model().objects.create_user(username="ivy")
    owner_client = Client()
    owner_client.force_login(owner)
    owner_client.post("/accounts/keys/", {"name": "ivy_secret_name"})
    key = owner.api_keys.get()
    other = Client()
    other.force_login(get_user_model().objects.create_user(username="jon"))
    for data in ({}, {"confirm": "1"}):
        response = other.post(f"/accounts/keys/{key.pk}/revoke/", data)
        assert response.status_code == 404 and "ivy_secret_name" not in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None
