"""Who is calling: the API key in ``Authorization: Bearer <key>``, and the per-key rate limit."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.accounts.api_keys import api_key_authenticate
from apps.accounts.models import ApiKey
from apps.api.errors import ApiError
from apps.api.ratelimit import limiter_for


async def api_key_from(request: HttpRequest) -> ApiKey:
    """The caller's active key; ``ApiError`` 401 when it is missing, malformed, unknown or revoked."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if not header:
        raise ApiError(
            401,
            "No API key: send 'Authorization: Bearer <key>'. Create a key at /accounts/keys/.",
            code="missing_api_key",
        )
    key = await api_key_authenticate(raw=raw.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        # One message for every failure: whether a prefix exists is nobody's business.
        raise ApiError(401, "Invalid or revoked API key.", code="invalid_api_key")
    return key


async def rate_check(key: ApiKey) -> None:
    """Count this request against the key's limit; ``ApiError`` 429 with Retry-After once it is spent."""
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    decision = await limiter_for(settings.REDIS_URL).acheck(key.prefix, limit=limit)
    if not decision.allowed:
        raise ApiError(
            429,
            f"Rate limit reached: {limit} requests per minute for this key. "
            f"Try again in {decision.retry_after} s.",
            code="rate_limit_exceeded",
            retry_after=decision.retry_after,
        )
