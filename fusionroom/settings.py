"""Settings for Fusion Room, read from typed environment variables (see README, "Configuration")."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from fusionroom.env import env_bool, env_float, env_int, env_list, env_str, parse_endpoints

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-fusionroom-development-only-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (make run sets DEBUG=1 for you)")
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured("ALLOWED_HOSTS must not contain '*' when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "csp",
    "apps.core",
    "apps.accounts",
    "apps.panels",
    "apps.chat",
    "apps.api",
    "apps.comparisons",
    "apps.evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "fusionroom.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "fusionroom.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "apps.core.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        # A kept connection the database has dropped (a restart, a killed backend) is found out and replaced
        # before a request uses it, instead of failing that request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the run recorder write while pages read; a busy timeout rides out short write locks. Django
    # runs each HTTP request's ORM calls on a thread (so a connection) of its own, beside the one thread that
    # sockets and run recorders share, so writers really run at once: a transaction takes the write lock when
    # it begins (IMMEDIATE), because a deferred one that reads and then writes fails at once with "database is
    # locked" when another writer got there first (SQLite cannot wait there without risking a deadlock).
    # Options in the URL's query (sqlite:///db.sqlite3?timeout=60) win over these.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        **DATABASES["default"].get("OPTIONS", {}),
    }
    # No fixed test database name: each test run picks a file of its own (tests/conftest.py).
    if not env_str("DATABASE_CONN_MAX_AGE"):
        # Keep SQLite connections open: opening one (file, PRAGMAs, functions) costs more than most queries
        # the sockets and the run recorders make, and those all run on one thread, which holds one
        # connection. An HTTP request's thread ends with the request, and its connection with it.
        DATABASES["default"]["CONN_MAX_AGE"] = None

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_str("DATABASE_CONN_MAX_AGE"):
    # A pool of connections per process (psycopg's, through Django's documented "pool" option): the sockets,
    # the run recorders and the flusher go through Channels' database_sync_to_async, which closes the
    # connection after every call, so without a pool every call opened a new one (a TCP and authentication
    # round trip each: most of a busy process's database time). Django checks a pooled connection before
    # handing it out (CONN_HEALTH_CHECKS), so one the server dropped is replaced instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_SIZE", 20, minimum=2),
        # Seconds a caller waits for a free connection before an error, when all are in use.
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def redis_channel_layer(url: str, **config: Any) -> dict[str, Any]:
    """The channels-redis layer on ``url`` as ``CHANNEL_LAYERS`` takes it; ``config`` adds to its CONFIG.

    The pub/sub layer, not channels-redis's list-based one: there each process takes its messages from Redis
    one blocking read (a round trip) at a time, so a busy process fell behind its own sockets, its shared
    inbound list filled up (capacity) and group sends were dropped: with 50 concurrent runs on one worker,
    14 of the 50 turns never reached their page's end (bench/load.py, postgres set-up). A subscription
    instead streams every message of the process's groups and channels down one connection as published.
    Nothing waits in Redis for a channel nobody listens to, which is what a run needs: a frame for a page
    that has gone is dropped either way, and a cancel or snapshot request for a recorder that has gone falls
    back to the database.
    The tests build their layers here too.
    """
    host: dict[str, Any] = {
        "address": url,
        # A publish waits for Redis's reply this long at most; the subscription's own reads have their own
        # short timeout (the layer polls it), so a quiet socket is never an error.
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    }
    if urlsplit(url).scheme != "unix":
        # A pooled connection that sits idle while the peer silently vanishes is found dead by the kernel, so
        # the pool reconnects when it hands it out, instead of a command waiting out the socket timeout.
        host["socket_keepalive"] = True
    return {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [host], **config}}


REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {
        # One process: Channels' layer interface with the same work per message whatever the number of
        # sockets (apps/chat/layers.py).
        "default": {"BACKEND": "apps.chat.layers.InProcessChannelLayer", "CONFIG": {"capacity": 1500}}
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Security headers -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"

from csp.constants import NONCE, NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        # CSP Level 3: 'self' also matches ws:/wss: on the same host, which is where our socket lives.
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Models and providers ---------------------------------------------------------------------------
OPENROUTER_API_KEY = env_str("OPENROUTER_API_KEY")
OPENROUTER_BASE_URL = env_str("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1").rstrip("/")
# Extra OpenAI-compatible servers: "ollama=http://127.0.0.1:11434/v1,vllm=http://10.0.0.5:8000/v1".
# A key for one of them comes from FUSIONROOM_ENDPOINT_<NAME>_API_KEY.
FUSIONROOM_ENDPOINTS = parse_endpoints(env_str("FUSIONROOM_ENDPOINTS"))
FUSIONROOM_ENDPOINT_KEYS = {
    name: env_str(f"FUSIONROOM_ENDPOINT_{name.upper().replace('-', '_')}_API_KEY")
    for name in FUSIONROOM_ENDPOINTS
}
FUSIONROOM_PUBLIC_URL = env_str("FUSIONROOM_PUBLIC_URL", "http://127.0.0.1:8000")
PROVIDER_CONNECT_TIMEOUT = env_float("PROVIDER_CONNECT_TIMEOUT", 10.0, minimum=0.1)
PROVIDER_READ_TIMEOUT = env_float("PROVIDER_READ_TIMEOUT", 120.0, minimum=0.1)
PROVIDER_TOTAL_TIMEOUT = env_float("PROVIDER_TOTAL_TIMEOUT", 600.0, minimum=1.0)
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", 3, minimum=0)
# Seconds per streamed word of the offline demo models; tests set it to 0.
DEMO_MODEL_DELAY = env_float("DEMO_MODEL_DELAY", 0.02, minimum=0.0)
# What the demo judge and writer say. It reads the engine's prompts, so the providers are told where it is.
DEMO_ROLE_REPLY = "apps.fusion.demo_content.role_reply"
# What a user's recent runs wrote (a panels.costs.UsageHistory), for the typical figure of the cost estimate:
# the chat app records runs, and the panels app, which makes the estimate, sits below it.
COST_ESTIMATE_USAGE_HISTORY = "apps.chat.usage.usage_history_for"
CATALOG_CACHE_SECONDS = env_int("CATALOG_CACHE_SECONDS", 3600, minimum=0)

# --- Web tools for panel models ----------------------------------------------------------------------
# web_fetch reads public pages only (see apps/webtools/guard.py); web_search needs a SearXNG-compatible
# service (GET <url>/search?q=...&format=json), e.g. a self-hosted SearXNG with the json format enabled.
WEB_FETCH = env_bool("WEB_FETCH", True)
WEB_SEARCH_URL = env_str("WEB_SEARCH_URL").rstrip("/")
# Which search panel models get (apps/webtools/toolbox.py): auto (SearXNG when WEB_SEARCH_URL is set, else
# OpenRouter's server-side web search for models routed to OpenRouter), searxng, openrouter, or off.
WEB_SEARCH = env_str("WEB_SEARCH", "auto").strip().lower()
if WEB_SEARCH not in ("auto", "searxng", "openrouter", "off"):
    raise ImproperlyConfigured(f"WEB_SEARCH must be auto, searxng, openrouter or off, not {WEB_SEARCH!r}")
if WEB_SEARCH == "searxng" and not WEB_SEARCH_URL:
    raise ImproperlyConfigured("WEB_SEARCH=searxng needs WEB_SEARCH_URL (a SearXNG-compatible service)")
WEB_FETCH_MAX_BYTES = env_int("WEB_FETCH_MAX_BYTES", 2_000_000, minimum=1024)
WEB_FETCH_TIMEOUT = env_float("WEB_FETCH_TIMEOUT", 15.0, minimum=0.5)

# --- Chatroom runs ----------------------------------------------------------------------------------
# How often a running turn's text is written to the database, how often its heartbeat is refreshed, and
# after how long without one a "running" turn is taken for the leftover of a dead process (interrupted).
CHAT_FLUSH_SECONDS = env_float("CHAT_FLUSH_SECONDS", 0.25, minimum=0.01)
CHAT_HEARTBEAT_SECONDS = env_float("CHAT_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
CHAT_STALE_AFTER_SECONDS = env_float("CHAT_STALE_AFTER_SECONDS", 30.0, minimum=1.0)
# How long a socket waits for a live run's snapshot before answering from the database.
CHAT_SNAPSHOT_TIMEOUT_SECONDS = env_float("CHAT_SNAPSHOT_TIMEOUT_SECONDS", 3.0, minimum=0.1)
# How long a run's changes are held, from the first, so that every column that moved in that time goes down
# as one WebSocket frame of deltas, and every part of the turn that changed (seats started or finished, the
# analysis, the fused answer) as one frame rendered once. 0: until the recorder is idle, so what one pass of
# the event loop brought goes as one frame, and more goes together the busier the server is. A 10 ms window
# saved 5-10% of the frames but no CPU beyond the noise (-7% to +9% between runs of python -m bench --only
# measures) and added up to 10 ms to every token's delay (p50 13-15 ms instead of 6 ms at 50 runs).
CHAT_DELTA_WINDOW_SECONDS = env_float("CHAT_DELTA_WINDOW_SECONDS", 0.0, minimum=0.0)

# Speed measures switched off (apps/core/speed.py): only ``make bench`` sets this, to price each measure.
SPEED_MEASURES_OFF = frozenset(env_list("SPEED_MEASURES_OFF", []))

# --- Evaluations -----------------------------------------------------------------------------------
# How often a running evaluation refreshes its heartbeat, and after how long without one a "running"
# evaluation is taken for the leftover of a dead process (interrupted, resumable).
EVALUATION_HEARTBEAT_SECONDS = env_float("EVALUATION_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
EVALUATION_STALE_AFTER_SECONDS = env_float("EVALUATION_STALE_AFTER_SECONDS", 30.0, minimum=1.0)

# --- API -------------------------------------------------------------------------------------------
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 60, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
