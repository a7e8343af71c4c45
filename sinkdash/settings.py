"""sinkdash settings: everything that differs between machines comes from the environment.

The variables are listed in README.md ("Configuration"); nothing here needs editing to deploy.
"""

import os
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from sinkdash.env import env_bool, env_int, env_list, persistent_secret

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_list("SINKDASH_DATA_DIR", [str(BASE_DIR / "data")])[0]).resolve()

DEBUG = env_bool("SINKDASH_DEBUG", False)

# Generated once and kept in the data directory (mode 0600), so a fresh clone needs no set-up and
# several server processes on one machine share the same values.
SECRET_KEY = persistent_secret("SINKDASH_SECRET_KEY", DATA_DIR / "secret-key", length=50)
SINK_TOKEN = persistent_secret("SINKDASH_SINK_TOKEN", DATA_DIR / "sink-token", length=32)
# Optional bearer token for scripts reading the API; unset means session sign-in only.
API_TOKEN = env_list("SINKDASH_API_TOKEN", [""])[0]

ALLOWED_HOSTS = env_list("SINKDASH_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("SINKDASH_CSRF_TRUSTED_ORIGINS", [])
PUBLIC_URL = env_list("SINKDASH_PUBLIC_URL", [""])[0].rstrip("/")
if PUBLIC_URL and PUBLIC_URL not in CSRF_TRUSTED_ORIGINS:
    CSRF_TRUSTED_ORIGINS.append(PUBLIC_URL)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "runs.middleware.SignInRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "sinkdash.urls"
ASGI_APPLICATION = "sinkdash.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite in the data directory unless DATABASE_URL points elsewhere (PostgreSQL for several
# server processes on one database).
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'sinkdash.sqlite3'}",
        # Closed after each request, into the backend's pool of idle connections (sinkdash/db):
        # under ASGI each request runs in a thread of its own, so a connection kept open for its
        # thread would never be used again.
        conn_max_age=0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "sinkdash.db.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock when a transaction starts, so two writers queue on the
        # busy timeout instead of one failing with "database is locked" when it upgrades a read lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SINKDASH_SQLITE_TIMEOUT", 20),
        # WAL lets pages read while the sink writes; NORMAL is durable across process crashes in WAL.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
        ),
    }
    # A file, not :memory:, so live-server tests share it across threads; one per process, so
    # test runs side by side (or a test server beside `make run`) never touch each other's file.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "sinkdash.db.postgresql"
    # Like SQLite's busy timeout: a delivery that waits this long for a lock gets a 503 and is
    # retried by the sender, rather than hanging the request.
    lock_ms = env_int("SINKDASH_SQLITE_TIMEOUT", 20) * 1000
    # No parallel workers: every dashboard query is a short index walk that stops at a page,
    # which the planner cannot always tell (a LIKE over the newest runs looks selective to it),
    # and starting workers took longer than the walk: 20 ms against 2 ms at a million runs.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c lock_timeout={lock_ms} -c max_parallel_workers_per_gather=0"
    )
    # Parameters travel apart from the query instead of being quoted into it by psycopg in
    # Python: an import batch carries 2,000 raw bodies, and quoting them took a quarter of its
    # time. Inserts stay under PostgreSQL's 65,535 parameters (runs.sql chunks them by 500 rows).
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "runs" / "assets"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies without a manifest: pages render before (or without) collectstatic.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Served by the app itself (no CDN, no separate web server). Finders let tests and a fresh
# checkout serve the files before collectstatic has run.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT.mkdir(exist_ok=True)

# The sink accepts bodies up to this size (Intuned results reach 2 MB; Django's 2.5 MB default
# would refuse some). Forms never come near it.
MAX_BODY_BYTES = env_int("SINKDASH_MAX_BODY_MB", 10) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
# Refused bodies are kept for inspection, bounded so a misconfigured sender cannot fill the disk.
QUARANTINE_MAX_COUNT = env_int("SINKDASH_QUARANTINE_MAX_COUNT", 1000)
QUARANTINE_MAX_BYTES = env_int("SINKDASH_QUARANTINE_MAX_MB", 200) * 1024 * 1024
# The sink commits through one writer thread per process (runs.sink); tests that run inside a
# transaction on their own connection turn this off.
SINK_WRITER_THREAD = env_bool("SINKDASH_SINK_WRITER_THREAD", True)
# Runs last received longer ago than this many days are pruned every hour by `make run`
# (manage.py serve); unset keeps everything. `manage.py prune` uses it as its default age.
RETENTION_DAYS = env_int("SINKDASH_RETENTION_DAYS", 0)
# Seconds a sender is told to wait when the database cannot take the delivery.
RETRY_AFTER_SECONDS = env_int("SINKDASH_RETRY_AFTER", 10)

# Security headers. The CSP allows only same-origin scripts and styles: no inline code at all.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send X-CSRFToken on POSTs.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SINKDASH_SECURE_COOKIES", False)
SECURE_SSL_REDIRECT = env_bool("SINKDASH_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SINKDASH_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = False
# Preloading is for a domain one owns for good; sinkdash usually sits on a tunnel's host name,
# which must never be submitted to the browsers' preload list. So `check --deploy` need not ask.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
if env_bool("SINKDASH_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"runs": {"level": env_list("SINKDASH_LOG_LEVEL", ["INFO"])[0]}},
}
