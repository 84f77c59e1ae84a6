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
