"""Share-link tokens: ``secrets.token_urlsafe(32)``, shown once at creation; only its sha256 is stored, and a
link is found by hashing the token it is opened with."""

from __future__ import annotations

import hashlib
import secrets


def share_token_new() -> str:
    return secrets.token_urlsafe(32)


def share_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
