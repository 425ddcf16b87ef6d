"""Django settings for Ripple, read from the environment (see .env.example)."""

import ipaddress
import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number <= 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, not {value!r}")
    return number


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value!r}")
    return number


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it, or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "ripple-dev-only-insecure-key"  # noqa: S105 - refused above unless DEBUG

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "daphne",  # first: runserver becomes daphne's ASGI runserver
    "chat",  # before the admin: chat/templates/admin/index.html adds the dashboard link
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Early, so that responses made by the middleware below it (CSRF 403s, redirects) get it too.
    "chat.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: a SQLite file unless DATABASE_URL says otherwise (postgres://... for PostgreSQL).
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Persistent connections: opening one per query (0) costs more than the query itself.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Writers take the write lock when their transaction begins, so two processes that
        # assign sequence numbers queue up instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Deploy (issue 16): persistent connections rather than Django's PostgreSQL pool
# (OPTIONS={"pool": True}, psycopg-pool), which Django suggests under ASGI: Channels closes
# connections older than CONN_MAX_AGE around every consumer call, and on the echo bench the pool
# was no faster and cost more CPU per message (docs/benchmarks.md, "Database connections").

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in memory (one process) unless REDIS_URL names a Redis server.
REDIS_URL = env("REDIS_URL", "")
# Which channels-redis layer carries the hubs' traffic: "pubsub" (one PUBLISH per message) or
# "core" (per-process lists). Either is at-most-once; chat/hub/ repairs losses from the database.
RIPPLE_CHANNEL_LAYER = env("RIPPLE_CHANNEL_LAYER", "pubsub")
if RIPPLE_CHANNEL_LAYER not in ("core", "pubsub"):
    raise ImproperlyConfigured(f"RIPPLE_CHANNEL_LAYER must be core or pubsub, not {RIPPLE_CHANNEL_LAYER!r}")
REDIS_HOST = {
    "address": REDIS_URL,
    # redis-py 8's 5 s default equals the core layer's 5 s blocking read and would close idle
    # receive loops; the pool default (100) is too small for a burst of handshakes.
    "socket_timeout": None,
    "socket_connect_timeout": 5,
    "max_connections": env_int("RIPPLE_REDIS_MAX_CONNECTIONS", 1000),
}
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if not REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif RIPPLE_CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_HOST]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_HOST], "capacity": 1000, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve /static/ from the application itself (Django's development handler: files read through
# the finders on every request, no hashed names, no caching): on by default only with DEBUG
# (make run). In production nginx (or a CDN) serves STATIC_ROOT after collectstatic (issue 16).
RIPPLE_SERVE_STATIC = env_bool("RIPPLE_SERVE_STATIC", DEBUG)
if not RIPPLE_SERVE_STATIC:
    # Served by nginx from collectstatic's output: hashed names, so long cache lifetimes are
    # safe across deploys.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "project.storage.HashedStaticStorage"},
    }

# Cookies: never readable from script, not sent on cross-site subrequests, and only over TLS
# when DJANGO_HTTPS says the site is served over https (nginx or daphne's TLS endpoint).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
DJANGO_HTTPS = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = DJANGO_HTTPS
if DJANGO_HTTPS:
    # nginx terminates TLS and says so in X-Forwarded-Proto (deploy/nginx.conf).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0, minimum=0)
# A clean `manage.py check --deploy` (issue 16): what it warns about that is deliberate here,
# each with its reason. Anything else it reports is a real warning (CI fails on it).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    # SECURE_SSL_REDIRECT: nginx answers plain http:// with a 301 to https://
    # (deploy/nginx-tls.conf), and daphne's TLS endpoint has no plain port to redirect from.
    "security.W008",
]
if not DJANGO_HTTPS:
    SILENCED_SYSTEM_CHECKS += [
        # Served over plain http:// by choice (DJANGO_HTTPS=0; docker-compose.yml on :8080): HSTS
        # only counts over https, and browsers never send Secure cookies back over http, so
        # every form would fail its CSRF check. DJANGO_HTTPS=1 turns all three on.
        "security.W004",  # SECURE_HSTS_SECONDS
        "security.W012",  # SESSION_COOKIE_SECURE
        "security.W016",  # CSRF_COOKIE_SECURE
    ]
if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    # HSTS for every subdomain is a decision for the whole domain, not for one app on it:
    # opt in with DJANGO_HSTS_INCLUDE_SUBDOMAINS=1.
    SILENCED_SYSTEM_CHECKS.append("security.W005")
if not SECURE_HSTS_PRELOAD:
    # The browsers' preload list is hard to leave (months): opt in with DJANGO_HSTS_PRELOAD=1.
    SILENCED_SYSTEM_CHECKS.append("security.W021")
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_COOKIE_AGE", 14 * 24 * 3600)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "chat:index"
# Origins a WebSocket handshake (and the HTTP fallback's POST) may come from, as
# scheme://host[:port]; empty: any origin whose host is in ALLOWED_HOSTS.
RIPPLE_ALLOWED_ORIGINS = env_list("RIPPLE_ALLOWED_ORIGINS", "")

# Logs (issue 16): one format for every logger, Django's, daphne's and Ripple's, on stderr
# through one handler: JSON lines (chat/logs.py) by default, readable text when DEBUG is on.
RIPPLE_LOG_FORMAT = env("RIPPLE_LOG_FORMAT", "") or ("text" if DEBUG else "json")
if RIPPLE_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"RIPPLE_LOG_FORMAT must be json or text, not {RIPPLE_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "chat.logs.JsonFormatter"},
        "text": {"()": "chat.logs.TextFormatter"},
    },
    # A client's bad request (a Host not allowed, a suspicious operation) is answered 400 and
    # logged as one line, without the traceback Django attaches to it: no fault of the server.
    "filters": {"client_errors": {"()": "chat.logs.ClientErrorFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": RIPPLE_LOG_FORMAT,
            "filters": ["client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's defaults give these handlers of their own (a second copy of every request
        # error with DEBUG on, runserver's bare lines): here they only propagate to the root.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # One line per connect, disconnect, heartbeat timeout, refused handshake and
        # moderation action (chat/logs.py), whatever DJANGO_LOG_LEVEL says.
        "ripple.events": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Ripple's own knobs.
RIPPLE_HEARTBEAT_INTERVAL_S = env_float("RIPPLE_HEARTBEAT_INTERVAL_S", 20.0)
RIPPLE_HEARTBEAT_TIMEOUT_S = env_float("RIPPLE_HEARTBEAT_TIMEOUT_S", 10.0)
RIPPLE_HISTORY_SIZE = env_int("RIPPLE_HISTORY_SIZE", 50)
RIPPLE_RESUME_LIMIT = env_int("RIPPLE_RESUME_LIMIT", 500)
# The most message bytes one `subscribed` frame carries (the newest that fit; see protocol.md).
RIPPLE_MAX_HISTORY_BYTES = env_int("RIPPLE_MAX_HISTORY_BYTES", 512 * 1024)
RIPPLE_MAX_BODY_CHARS = env_int("RIPPLE_MAX_BODY_CHARS", 4000)
RIPPLE_MAX_FRAME_CHARS = env_int("RIPPLE_MAX_FRAME_CHARS", 16384)
RIPPLE_MAX_SUBSCRIPTIONS = env_int("RIPPLE_MAX_SUBSCRIPTIONS", 100)
RIPPLE_GAP_FILL_S = env_float("RIPPLE_GAP_FILL_S", 0.2)
RIPPLE_TAIL_CHECK_S = env_float("RIPPLE_TAIL_CHECK_S", 5.0)
RIPPLE_PRESENCE_TTL_S = env_float("RIPPLE_PRESENCE_TTL_S", 60.0)
RIPPLE_PRESENCE_GRACE_S = env_float("RIPPLE_PRESENCE_GRACE_S", 5.0)
RIPPLE_PRESENCE_BATCH_S = env_float("RIPPLE_PRESENCE_BATCH_S", 0.25)
RIPPLE_DASHBOARD_EXPIRY_S = env_float("RIPPLE_DASHBOARD_EXPIRY_S", 5.0)
RIPPLE_DASHBOARD_REPORT_S = env_float("RIPPLE_DASHBOARD_REPORT_S", 1.0)
# The collector's thresholds once startup objects are frozen (chat/gc_policy.py); "default":
# Python's own (700,10,10).
RIPPLE_GC_THRESHOLDS = env_list("RIPPLE_GC_THRESHOLDS", "1000,10,1000")

# Hostile input (docs/security.md). Rates are tokens per second, bursts the bucket size.
RIPPLE_RATE_MESSAGES_PER_S = env_float("RIPPLE_RATE_MESSAGES_PER_S", 5.0)
RIPPLE_RATE_MESSAGES_BURST = env_int("RIPPLE_RATE_MESSAGES_BURST", 20)
RIPPLE_RATE_USER_MESSAGES_PER_S = env_float("RIPPLE_RATE_USER_MESSAGES_PER_S", 10.0)
RIPPLE_RATE_USER_MESSAGES_BURST = env_int("RIPPLE_RATE_USER_MESSAGES_BURST", 40)
RIPPLE_RATE_FRAMES_PER_S = env_float("RIPPLE_RATE_FRAMES_PER_S", 20.0)
RIPPLE_RATE_FRAMES_BURST = env_int("RIPPLE_RATE_FRAMES_BURST", 60)
RIPPLE_FLOOD_STRIKES = env_int("RIPPLE_FLOOD_STRIKES", 30)
RIPPLE_MAX_OUTBOUND_BYTES = env_int("RIPPLE_MAX_OUTBOUND_BYTES", 1024 * 1024)
RIPPLE_MAX_CONNECTIONS_PER_USER = env_int("RIPPLE_MAX_CONNECTIONS_PER_USER", 20)
RIPPLE_MAX_CONNECTIONS_PER_IP = env_int("RIPPLE_MAX_CONNECTIONS_PER_IP", 200)
# Seconds a user or guest a moderator removed is kept out (their sockets refused with 4403).
RIPPLE_REMOVAL_S = env_float("RIPPLE_REMOVAL_S", 900.0)
# Private rooms' subscribers are re-checked this often, for membership changes no signal sees.
RIPPLE_ACCESS_RECHECK_S = env_float("RIPPLE_ACCESS_RECHECK_S", 10.0)
# Room creation (a subscribe to a room that does not exist creates it; docs/security.md): who
# may, and how often per user or guest session (per socket without a cookie) and per address.
RIPPLE_ROOM_CREATION = env("RIPPLE_ROOM_CREATION", "anyone")
if RIPPLE_ROOM_CREATION not in ("anyone", "users", "staff"):
    raise ImproperlyConfigured(
        f"RIPPLE_ROOM_CREATION must be anyone, users or staff, not {RIPPLE_ROOM_CREATION!r}"
    )
RIPPLE_ROOM_CREATE_PER_MIN = env_float("RIPPLE_ROOM_CREATE_PER_MIN", 6.0)
RIPPLE_ROOM_CREATE_BURST = env_int("RIPPLE_ROOM_CREATE_BURST", 10)

# Transport guards under daphne (chat/daphne_guard.py): an HTTP request (a WebSocket upgrade
# included) must be complete this long after its connection opened or the previous response
# ended, or it is answered 408 and closed.
RIPPLE_REQUEST_TIMEOUT_S = env_float("RIPPLE_REQUEST_TIMEOUT_S", 10.0)
# Graceful restart: sockets are sent away over this window (manage.py drain, SIGTERM).
RIPPLE_DRAIN_S = env_float("RIPPLE_DRAIN_S", 5.0)
RIPPLE_DRAIN_ON_SIGTERM = env_bool("RIPPLE_DRAIN_ON_SIGTERM", True)

# /metrics exposure (docs/security.md): who may read /metrics and /readyz (client networks;
# anyone else gets a 404), and how many public rooms /metrics names.
RIPPLE_METRICS_ALLOW = env_list(
    "RIPPLE_METRICS_ALLOW", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)
for _network in RIPPLE_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"RIPPLE_METRICS_ALLOW: {_network!r} is not a network") from None
RIPPLE_METRICS_MAX_ROOMS = env_int("RIPPLE_METRICS_MAX_ROOMS", 20, minimum=0)

# Guest names (chat/names.py, docs/security.md): a guest may not take a name that could pass
# for one of these (nor for a registered username).
RIPPLE_RESERVED_NAMES = env_list(
    "RIPPLE_RESERVED_NAMES",
    "system,announcement,announcements,admin,administrator,moderator,mod,staff,ripple,root,"
    "support,server,guest,everyone,here,channel,owner,operator,official,bot,null,undefined",
)

# Message validation hook (docs/extending.md): dotted paths of callables
# (room_slug, author, body) -> None that raise chat.services.MessageRejected to refuse a message
# (error message_rejected on the socket). Imported once, on the first message.
RIPPLE_MESSAGE_VALIDATORS = env_list("RIPPLE_MESSAGE_VALIDATORS", "")
