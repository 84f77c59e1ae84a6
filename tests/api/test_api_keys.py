"""API keys: the account page, the ``apikey`` command and the key services."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from apps.accounts.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from apps.accounts.models import ApiKey

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"fr-[0-9a-f]{12}-[A-Za-z0-9]{43}")


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def alice_client(client: Client, alice: User) -> Client:
    client.force_login(alice)
    return client


def test_the_keys_page_needs_a_login(client: Client) -> None:
    response = client.get("/accounts/keys/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_creating_a_key_shows_it_once_and_stores_only_a_hash(alice_client: Client, alice: User) -> None:
    response = alice_client.post("/accounts/keys/", {"name": "laptop"})
    assert response.status_code == 201
    body = response.content.decode()
    match = KEY_RE.search(body)
    assert match, body
    raw = match.group(0)
    key = ApiKey.objects.get(user=alice)
    _, prefix, secret = raw.split("-", 2)
    assert key.name == "laptop" and key.prefix == prefix
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in key.secret_hash
    assert response["Cache-Control"] == "no-store"

    listing = alice_client.get("/accounts/keys/").content.decode()
    assert "laptop" in listing and f"fr-{prefix}-" in listing
    assert secret not in listing


def test_a_key_without_a_name_is_refused_with_a_message(alice_client: Client) -> None:
    response = alice_client.post("/accounts/keys/", {"name": ""})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_revoked_key_no_longer_authenticates(alice: User) -> None:
    from asgiref.sync import sync_to_async

    key, raw = await sync_to_async(api_key_create)(user=alice, name="k")
    assert (await api_key_authenticate(raw=raw)) is not None
    await sync_to_async(api_key_revoke)(user=alice, key_id=key.pk)
    assert (await api_key_authenticate(raw=raw)) is None


@pytest.mark.django_db(transaction=True)
async def test_wrong_secrets_and_malformed_keys_do_not_authenticate(alice: User) -> None:
    from asgiref.sync import sync_to_async

    key, raw = await sync_to_async(api_key_create)(user=alice, name="k")
    for bad in [
        "",
        "fr-",
        raw[:-1] + ("A" if raw[-1] != "A" else "B"),
        f"fr-{key.prefix}-",
        "sk-abc",
        raw + "x",
    ]:
        assert (await api_key_authenticate(raw=bad)) is None, bad
    found = await api_key_authenticate(raw=raw)
    assert found is not None and found.pk == key.pk and found.user.username == "alice"


@pytest.mark.django_db(transaction=True)
async def test_using_a_key_records_when_it_was_last_used(alice: User) -> None:
    from asgiref.sync import sync_to_async

    key, raw = await sync_to_async(api_key_create)(user=alice, name="k")
    assert key.last_used_at is None
    await api_key_authenticate(raw=raw)
    await key.arefresh_from_db()
    assert key.last_used_at is not None


def test_revoking_from_the_page_marks_the_key_revoked(alice_client: Client, alice: User) -> None:
    key, _ = api_key_create(user=alice, name="old")
    # Revoking cannot be undone: the page asks first, and only the confirmed post revokes.
    alice_client.post(f"/accounts/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is None
    response = alice_client.post(f"/accounts/keys/{key.pk}/revoke/", {"confirm": "1"}, follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "revoked" in response.content.decode()


def test_nobody_can_revoke_someone_elses_key(client: Client, alice: User) -> None:
    key, _ = api_key_create(user=alice, name="mine")
    bob = User.objects.create_user("bob")
    client.force_login(bob)
    assert client.post(f"/accounts/keys/{key.pk}/revoke/").status_code == 404
    assert "mine" not in client.get("/accounts/keys/").content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_command_creates_lists_and_revokes_keys(alice: User) -> None:
    out, err = StringIO(), StringIO()
    call_command("apikey", "create", "alice", "--name", "ci", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert KEY_RE.fullmatch(raw), raw
    assert "cannot be shown again" in err.getvalue()
    prefix = raw.split("-")[1]

    out = StringIO()
    call_command("apikey", "list", "alice", stdout=out)
    assert f"fr-{prefix}-" in out.getvalue() and "ci" in out.getvalue() and "active" in out.getvalue()
    assert raw not in out.getvalue()

    out = StringIO()
    call_command("apikey", "revoke", raw, stdout=out)
    assert ApiKey.objects.get(prefix=prefix).revoked_at is not None


def test_the_command_refuses_an_unknown_user_or_prefix(alice: User) -> None:
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("apikey", "create", "nobody")
    with pytest.raises(CommandError, match="No key with prefix"):
        call_command("apikey", "revoke", "000000000000")
