"""API keys: creation, listing, revocation and authentication.

A key reads ``fr-<prefix>-<secret>``. The prefix is public (it is shown in the key list and finds the row);
only the sha256 of the secret is stored, and the full key is shown once, when it is created. Authentication
compares hashes in constant time, so a wrong secret for a known prefix takes as long to refuse as a right one
to accept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import ApiKey

KEY_SCHEME = "fr"
PREFIX_BYTES = 6  # 12 hex characters: public, unique, no "-" in it
# Letters and digits only, so a double click selects the whole secret; 43 of them carry 256 bits.
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_CHARS = 43
MAX_KEY_LENGTH = 200
# last_used_at is a hint for the owner, not an audit log: one write a minute per key is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Hashed on a miss, so an unknown prefix costs the same work as a known one.
_MISS_HASH = hashlib.sha256(b"no such key").hexdigest()


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user_id(user: AbstractBaseUser | AnonymousUser) -> int:
    if not user.is_authenticated or user.pk is None:
        raise PermissionError("API keys belong to signed-in users")
    return int(user.pk)


def api_key_parse(raw: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a key in our format, or None for anything else."""
    if not raw or len(raw) > MAX_KEY_LENGTH:
        return None
    parts = raw.split("-", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def api_key_create(*, user: AbstractBaseUser | AnonymousUser, name: str) -> tuple[ApiKey, str]:
    """Create a key for ``user``; returns the row and the full key, which is never available again."""
    name = name.strip()[:80] or "API key"
    prefix = secrets.token_hex(PREFIX_BYTES)
    while ApiKey.objects.filter(prefix=prefix).exists():  # 2**48 values: a clash is a curiosity, not a risk
        prefix = secrets.token_hex(PREFIX_BYTES)
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_CHARS))
    key = ApiKey.objects.create(
        user_id=_user_id(user), name=name, prefix=prefix, secret_hash=_secret_hash(secret)
    )
    return key, f"{KEY_SCHEME}-{prefix}-{secret}"


def api_key_list_for(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[ApiKey]:
    """The user's keys, newest first, revoked ones included (they show as revoked)."""
    return ApiKey.objects.filter(user_id=_user_id(user)).order_by("-created_at", "-pk")


def api_key_revoke(*, user: AbstractBaseUser | AnonymousUser, key_id: int) -> ApiKey:
    """Revoke one of ``user``'s keys (idempotent); ``ApiKey.DoesNotExist`` for anyone else's."""
    return _revoke(ApiKey.objects.get(pk=key_id, user_id=_user_id(user)))


def api_key_revoke_by_prefix(*, prefix: str) -> ApiKey:
    """Revoke a key by its public prefix (the ``apikey revoke`` command); ``ApiKey.DoesNotExist`` if none."""
    return _revoke(ApiKey.objects.get(prefix=prefix))


def _revoke(key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


async def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key ``raw`` names (its user loaded), or None when it is malformed, unknown or revoked."""
    parsed = api_key_parse(raw)
    if parsed is None:
        return None
    prefix, secret = parsed
    key = await ApiKey.objects.select_related("user").filter(prefix=prefix).afirst()
    expected = key.secret_hash if key is not None else _MISS_HASH
    matches = hmac.compare_digest(expected, _secret_hash(secret))
    if key is None or not matches or key.revoked_at is not None or not key.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
        await ApiKey.objects.filter(pk=key.pk).aupdate(last_used_at=now)
    return key
