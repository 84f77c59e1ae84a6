"""Typed reads of environment variables that fail loudly on bad values."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_endpoints(raw: str) -> dict[str, str]:
    """Parse ``FUSIONROOM_ENDPOINTS``: ``name=base_url`` pairs separated by commas or spaces.

    ``ollama=http://127.0.0.1:11434/v1`` makes ``ollama/llama3.2`` reach that server as model ``llama3.2``.
    """
    endpoints: dict[str, str] = {}
    for item in raw.replace(",", " ").split():
        name, sep, url = item.partition("=")
        name = name.strip().lower()
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ImproperlyConfigured(
                f"FUSIONROOM_ENDPOINTS entries look like name=http://host:port/v1, got {item!r}"
            )
        if name in {"demo", "fusion"} or not name.replace("-", "").replace("_", "").isalnum():
            raise ImproperlyConfigured(f"FUSIONROOM_ENDPOINTS: {name!r} cannot be used as an endpoint name")
        endpoints[name] = url.rstrip("/")
    return endpoints
