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
