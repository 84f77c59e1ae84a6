"""Production settings: `check --deploy` passes with a real configuration, and bad values stop the start.

Each case runs in a fresh interpreter, because settings are read once, at import.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Variables the settings read that a developer's shell (or `make`) may have set; each case starts without.
_SETTINGS_VARS = {
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "BEHIND_TLS_PROXY",
    "FUSIONROOM_ENDPOINTS", "DEMO_MODEL_DELAY", "PROVIDER_READ_TIMEOUT", "API_RATE_LIMIT_PER_MINUTE",
    "DJANGO_SETTINGS_MODULE",
}  # fmt: skip
SECRET = secrets.token_urlsafe(50)
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": SECRET,
    "ALLOWED_HOSTS": "fusion.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://fusion.example.com",
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in _SETTINGS_VARS}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "fusionroom.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _deploy_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    return _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {**PRODUCTION, **overrides})


def test_check_deploy_passes_with_production_settings() -> None:
    result = _deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("overrides", "warning"),
    [
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SESSION_COOKIE_SECURE": "0"}, "security.W012"),
        ({"SECRET_KEY": "django-insecure-short"}, "security.W009"),
    ],
)
def test_check_deploy_fails_when_a_production_setting_is_weakened(
    overrides: dict[str, str], warning: str
) -> None:
    # The passing case above means something only if the same command fails on a weakened configuration.
    result = _deploy_check(**overrides)
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


def _import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return _run(["-c", "import fusionroom.settings"], env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"DEBUG": "0"}, "SECRET_KEY must be set when DEBUG is off"),
        ({**PRODUCTION, "ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must not contain '*' when DEBUG is off"),
        ({**PRODUCTION, "ALLOWED_HOSTS": "fusion.example.com,*"}, "ALLOWED_HOSTS must not contain '*'"),
        ({"DEBUG": "1", "SESSION_COOKIE_SECURE": "sometimes"}, "SESSION_COOKIE_SECURE must be a boolean"),
        ({"DEBUG": "1", "SECURE_HSTS_SECONDS": "soon"}, "SECURE_HSTS_SECONDS must be an integer"),
        ({"DEBUG": "1", "SECURE_HSTS_SECONDS": "-5"}, "SECURE_HSTS_SECONDS must be at least 0"),
        ({"DEBUG": "1", "API_RATE_LIMIT_PER_MINUTE": "0"}, "API_RATE_LIMIT_PER_MINUTE must be at least 1"),
        ({"DEBUG": "1", "PROVIDER_READ_TIMEOUT": "fast"}, "PROVIDER_READ_TIMEOUT must be a number"),
        ({"DEBUG": "1", "DEMO_MODEL_DELAY": "-1"}, "DEMO_MODEL_DELAY must be at least 0.0"),
        ({"DEBUG": "1", "FUSIONROOM_ENDPOINTS": "ollama"}, "FUSIONROOM_ENDPOINTS entries look like"),
        (
            {"DEBUG": "1", "FUSIONROOM_ENDPOINTS": "ollama=ftp://10.0.0.5/v1"},
            "FUSIONROOM_ENDPOINTS entries look like",
        ),
        (
            {"DEBUG": "1", "FUSIONROOM_ENDPOINTS": "demo=http://127.0.0.1:1/v1"},
            "cannot be used as an endpoint name",
        ),
    ],
)
def test_bad_configuration_stops_the_start_with_a_clear_error(env: dict[str, str], message: str) -> None:
    result = _import_settings(**env)
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_a_configuration_error_does_not_echo_the_secret_key() -> None:
    result = _import_settings(**{**PRODUCTION, "SESSION_COOKIE_SECURE": "nope"})
    assert result.returncode != 0
    assert SECRET not in result.stdout + result.stderr


def test_development_defaults_start_with_debug_alone() -> None:
    result = _run(
        ["-c", "from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)"],
        {"DEBUG": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True ['127.0.0.1', 'localhost']"
