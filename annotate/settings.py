"""Settings for RewardLab, read only from the environment (API.md, "Processes and configuration").

With no environment at all the project talks to PostgreSQL and Redis on this machine (the `rewardlab`
database, Redis db 0), as `make demo` starts them; tests and deployments set DATABASE_URL and
CELERY_BROKER_URL. There is no other database or broker: the demo runs the code the tests prove.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("REWARDLAB_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean variable; accept the usual spellings and refuse anything else loudly."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {raw!r}")


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # A deployment (REWARDLAB_HTTPS) must not start on the development key below, which anyone can work out.
    if not DEBUG and (os.environ.get("REWARDLAB_REQUIRE_SECRET_KEY") or env_bool("REWARDLAB_HTTPS", False)):
        raise RuntimeError("SECRET_KEY must be set when REWARDLAB_HTTPS or REWARDLAB_REQUIRE_SECRET_KEY is on")
    # A per-checkout development key: never shared, never used when SECRET_KEY is set.
    SECRET_KEY = "dev-insecure-" + str(BASE_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Django's own form and widget templates, for FORM_RENDERER below, which looks in the apps' templates.
    "django.forms",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "csp",
    "annotate",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Before anything reads the body (CsrfViewMiddleware reads POST): an oversized one is refused unread.
    "annotate.uploads.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "annotate.urls"
WSGI_APPLICATION = "annotate.wsgi.application"

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
# Forms render from the engine above, so `{{ form.x.as_field_group }}` uses templates/partials/field.html.
FORM_RENDERER = "annotate.renderers.FormRenderer"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rewardlab"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if env_bool("DB_PREPARED_STATEMENTS", True):
    # psycopg prepares a statement on the server after a few uses, so PostgreSQL stops re-planning the
    # labeling loop's queries: +38% requests/s in bench/web.py (153 -> 212 at 8 annotators). Turn it off
    # behind a pooler in transaction mode (pgbouncer), which cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "campaign-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# htmx comes from the npm package htmx.org (package.json), served from node_modules, never copied by hand.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Uploaded files (images, import packages) are never served as public static files: images go through
# a view that checks campaign membership.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"

# Import packages can be large; the upload is streamed to disk, never read whole into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The largest import package accepted. A request whose Content-Length says more is answered 413 before a
# byte of its body is read, a chunked one once it passes the limit (annotate/uploads.py); every other address
# takes at most DATA_UPLOAD_MAX_MEMORY_SIZE.
REWARDLAB_MAX_UPLOAD_BYTES = int(os.environ.get("REWARDLAB_MAX_UPLOAD_BYTES", str(2 * 1024**3)))
REWARDLAB_MAX_IMAGE_PIXELS = int(os.environ.get("REWARDLAB_MAX_IMAGE_PIXELS", str(40_000_000)))
REWARDLAB_MAX_IMAGE_BYTES = int(os.environ.get("REWARDLAB_MAX_IMAGE_BYTES", str(20 * 1024**2)))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotate.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "annotate.api.pagination.PagePagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "annotate.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "annotate.api.errors.exception_handler",
    # How many proxies in front of the app append to X-Forwarded-For. Throttles key on the client address, and
    # with DRF's default (None) a client picks its own address by sending the header, one per guess.
    "NUM_PROXIES": int(os.environ.get("REWARDLAB_NUM_PROXIES", "0")),
    # Sign-ins (the login form and POST /api/v1/auth/token/), annotate/throttles.py: "auth" per client address
    # and username tried, "auth_client" per client address whatever the username (password spraying).
    "DEFAULT_THROTTLE_RATES": {
        "auth": os.environ.get("REWARDLAB_AUTH_THROTTLE", "30/min"),
        "auth_client": os.environ.get("REWARDLAB_AUTH_CLIENT_THROTTLE", "100/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RewardLab API",
    "DESCRIPTION": "Multimodal preference data: campaigns, imports, labeling, exports (API.md, version 1).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc are served from the sidecar package: nothing is fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets used by several fields, or several choice sets under one field name, get one clear name each.
    "ENUM_NAME_OVERRIDES": {
        "SideEnum": "annotate.models.Side",
        "CampaignStatusEnum": "annotate.models.Campaign.Status",
        "JobStatusEnum": "annotate.models.ModelRun.Status",  # import jobs share it
        "HallucinationTypeEnum": "annotate.models.HALLUCINATION_TYPES",  # a label's types and a span's type
    },
}

# The default cache holds the sign-in throttles' counts (annotate/throttles.py), which every web process must
# share, or the limit is multiplied by the number of processes (issue 18, item 7: three gunicorn workers let 60
# guesses through where 30 were meant). So it is never per process: the database by default (a table migration
# 0016 creates, so `migrate` is all a deployment runs), or Redis when CACHE_URL names one. Not the broker's Redis
# by default: when the broker is down labels are still saved, and sign-ins must keep working too.
# `check --deploy` warns when a settings override makes it per process again (annotate/checks.py).
CACHE_TABLE = "rewardlab_cache"
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL:
    raise ValueError(f"CACHE_URL must be a redis:// or rediss:// URL, got {CACHE_URL!r}")
else:
    # Past MAX_ENTRIES Django drops a third of the rows, counts included: set high, so a spray of usernames
    # cannot wipe the count of the one being guessed (expired rows go first).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": CACHE_TABLE,
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Fail fast when the broker is down: a request must not hang for kombu's default retry period.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"

REWARDLAB_DEVICE = os.environ.get("REWARDLAB_DEVICE", "")
REWARDLAB_TEXT_ENCODER = os.environ.get("REWARDLAB_TEXT_ENCODER", "")
REWARDLAB_IMAGE_ENCODER = os.environ.get("REWARDLAB_IMAGE_ENCODER", "")
REWARDLAB_VLM = os.environ.get("REWARDLAB_VLM", "")  # local VLM directory: runs from the gpu queue fine-tune it
# Where workers keep model artifacts (one directory per run) and the embedding cache; not served to anyone.
REWARDLAB_MODEL_DIR = Path(os.environ.get("REWARDLAB_MODEL_DIR", VAR_DIR / "models"))
REWARDLAB_CACHE_DIR = Path(os.environ.get("REWARDLAB_CACHE_DIR", VAR_DIR / "cache"))
# Seconds between a worker's beats (workers.presence), which also reap jobs whose worker was lost; keep it
# well under jobs.WORKER_SEEN_SECONDS, after which a silent worker is taken as gone. Tests of outages shorten it.
REWARDLAB_WORKER_BEAT_SECONDS = float(os.environ.get("REWARDLAB_WORKER_BEAT_SECONDS", "20"))
# Runs whose artifacts and pair scores are kept (the active one always is); older runs keep their metrics.
REWARDLAB_KEEP_RUNS = int(os.environ.get("REWARDLAB_KEEP_RUNS", "3"))
# Hard limit of one training run, in seconds; the soft limit a minute earlier fails the run cleanly.
REWARDLAB_TRAIN_TIME_LIMIT = int(os.environ.get("REWARDLAB_TRAIN_TIME_LIMIT", "7200"))

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads no cookie: the token travels in hx-headers on <body>.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Production behind TLS: REWARDLAB_HTTPS=1 (with DEBUG off) makes `manage.py check --deploy` clean
# (tests/test_deploy.py): cookies only over HTTPS, plain HTTP redirected, and a year of HSTS.
if not DEBUG and env_bool("REWARDLAB_HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("REWARDLAB_BEHIND_PROXY", False):
        # Only behind a proxy that sets this header itself (and strips a client's): otherwise anyone could
        # claim HTTPS. Without it, SECURE_SSL_REDIRECT behind a TLS-terminating proxy redirects forever.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (django-csp 4), on every response, DEBUG or not, so the browser tests run under it.
# Scripts and styles come only from our own static files: no inline script, no inline style, no eval.
# htmx works under it because base.html's htmx-config turns off its inline indicator <style> (the rules are in
# app.css) and eval (no hx-on, no trigger filters, no js: values are used); the error partial closes with a
# native <dialog> instead of an inline onclick. NONCE is sent only when a template asks for `request.csp_nonce`:
# the API docs pages (templates/drf_spectacular/) start Swagger UI and Redoc with one inline script each, and
# annotate/api/urls.py widens the policy for those two pages only (tests/test_csp_browser.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
