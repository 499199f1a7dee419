"""Settings, read from the environment through django-environ (see .env.example).

Production-safe defaults: DEBUG is off unless set, and then the web process and `check --deploy`
require SECRET_KEY (connections/secret_key.py); commands that sign nothing run without it.
"""

import sys
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-never-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")  # checked where it is used (connections/secret_key.py)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "connections.admin_config.CioAdminConfig",  # django.contrib.admin, with the overview on its home page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "connections.admin_config.LoginLockoutConfig",  # django-axes (see "Logins" below)
    "django_otp",  # two-factor login codes
    "connections.admin_config.TwoFactorConfig",  # django-otp's TOTP devices
    "connections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before CommonMiddleware, which validates the Host header: /healthz answers a probe by IP.
    "connections.middleware.HealthzBeforeHostCheckMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): logged in with a code
    "connections.middleware.BrowserTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as axes asks: turns a lockout into the lockout page
]

ROOT_URLCONF = "cioaudience.urls"

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

WSGI_APPLICATION = "cioaudience.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cioaudience.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL, a busy timeout and IMMEDIATE transactions let the web server and the workers
    # share the file: a deferred transaction that later wants to write fails at once with
    # "database is locked" instead of waiting its turn.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The default file lives under var/, which a fresh clone does not have yet.
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "admin:login"

# --- Logins (connections/login.py; docs/operations.md, "Logins") ---
# django-axes counts failed logins per (username, client address): after LOGIN_FAILURE_LIMIT in a row
# that pair is refused, even with the right password, for LOGIN_LOCKOUT_MINUTES after its last failure.
# Another address, or another username, is not affected. `manage.py axes_reset` (and the admin's
# "Access attempts") unlock at once. A wrong or missing two-factor code counts as a failure too.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_VERBOSE = False  # no start-up banner in every process's output
AXES_RESET_ON_SUCCESS = True  # a successful login starts the count again
# Attempts during a lockout do not push its end further: the page's "try again at" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "connections.login.lockout_response"
AXES_CLIENT_IP_CALLABLE = "connections.login.client_ip"
# Masked in axes' log lines and in the attempts it stores (the password always is).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]
# Reverse proxies in front of gunicorn that append the client's address to X-Forwarded-For (nginx's
# $proxy_add_x_forwarded_for). 0: the connecting address is the client's. Behind one proxy, 1: without
# it every login would seem to come from the proxy, and one user's lockout would hold for everyone.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# On: every admin login needs a code from a confirmed TOTP device (users without one cannot log in).
# Off (the default): only users who have a confirmed device must give its code.
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="cioaudience")

# --- Security (manage.py check --deploy --fail-level WARNING passes with DEBUG=0) ---
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# X-Forwarded-Proto is believed only when the operator says a proxy in front sets it: a
# client talking to gunicorn directly could otherwise claim HTTPS (and skip the redirect).
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_SSL_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"

# --- Encryption of Customer.io API keys at rest ---
# Comma-separated Fernet keys, newest first: the first encrypts, all decrypt.
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])

# --- Customer.io ---
CUSTOMERIO_US_URL = env.str("CUSTOMERIO_US_URL", default="https://track.customer.io")
CUSTOMERIO_EU_URL = env.str("CUSTOMERIO_EU_URL", default="https://track-eu.customer.io")
CUSTOMERIO_TIMEOUT = env.float("CUSTOMERIO_TIMEOUT", default=10.0)
# App API hosts (Bearer auth with a connection's App API key: creating manual segments).
CUSTOMERIO_APP_US_URL = env.str("CUSTOMERIO_APP_US_URL", default="https://api.customer.io")
CUSTOMERIO_APP_EU_URL = env.str("CUSTOMERIO_APP_EU_URL", default="https://api-eu.customer.io")

# --- Forwarding ---
# A transient failure is retried after a backoff, for ever (never given up): doubling from the
# base, at most the max, jittered; Retry-After wins when longer.
FORWARD_BACKOFF_BASE = env.float("FORWARD_BACKOFF_BASE", default=2.0)  # seconds
FORWARD_BACKOFF_MAX = env.float("FORWARD_BACKOFF_MAX", default=300.0)  # seconds
# Profiles claimed at once: one claim fills a manual-segment request (at most 1,000 ids); the
# v2 batches it becomes are cut by size (500 KB) as well.
FORWARD_BATCH_SIZE = env.int("FORWARD_BATCH_SIZE", default=1000)
FORWARD_V1_CONCURRENCY = env.int("FORWARD_V1_CONCURRENCY", default=8)  # v1 requests in flight per thread
FORWARD_V1_CLAIM_SIZE = env.int("FORWARD_V1_CLAIM_SIZE", default=50)  # v1: profiles claimed at once
# A streamed activation or resync (v2): pages of FORWARD_BATCH_SIZE people under way at once, their
# requests in flight together (each page's segment request after its identify), so a run is not
# held up by Customer.io's answer time; 1 sends one page after another.
STREAM_PAGES_IN_FLIGHT = env.int("STREAM_PAGES_IN_FLIGHT", default=4)
# A streamed run of at least STREAM_LANES x STREAM_LANE_MIN_PEOPLE people is split by profile id
# into this many lanes, sent by as many workers (or resync processes) at once (PostgreSQL only).
# One process is bound by its own CPU; match it to the worker processes free for it. 1: never split.
STREAM_LANES = env.int("STREAM_LANES", default=2)
STREAM_LANE_MIN_PEOPLE = env.int("STREAM_LANE_MIN_PEOPLE", default=50000)
# The lease of a claim, renewed before every request its worker sends: a killed worker's rows
# are free again after at most this long, and the next sweep hands them to another worker.
FORWARD_CLAIM_SECONDS = env.int("FORWARD_CLAIM_SECONDS", default=45)
# The circuit breaker (connections/services/connection/breaker.py): opens after BREAKER_MAX_FAILURES
# transient failures in a row with no answer between, however quickly (a fast sender in an outage), or
# after BREAKER_FAILURES of them spanning at least BREAKER_MIN_SECONDS (a slow sender); then one probe
# at a time, BREAKER_PROBE_BASE seconds apart, doubling up to BREAKER_PROBE_MAX (jittered).
BREAKER_MAX_FAILURES = env.int("BREAKER_MAX_FAILURES", default=20)
BREAKER_FAILURES = env.int("BREAKER_FAILURES", default=5)
BREAKER_MIN_SECONDS = env.float("BREAKER_MIN_SECONDS", default=10.0)
BREAKER_PROBE_BASE = env.float("BREAKER_PROBE_BASE", default=5.0)
BREAKER_PROBE_MAX = env.float("BREAKER_PROBE_MAX", default=300.0)
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=30.0)
# Changes committed for a connection publish at most one worker wake-up per this many seconds
# from a process (the first at once, the rest at the window's end): a flood of Firehose
# messages wakes the workers a few times a second instead of once per message. 0: every change.
FORWARD_WAKE_WINDOW_SECONDS = env.float("FORWARD_WAKE_WINDOW_SECONDS", default=0.25)
# A flood's sends wait until its changes pause for FORWARD_HOLD_QUIET_SECONDS, or until the oldest
# waiting change is FORWARD_HOLD_MAX_SECONDS old (services/forwarding/flood_hold.py): the same people changing
# again and again are sent about once. A backlog is sent at once. 0 (quiet): send as rows come due.
FORWARD_HOLD_QUIET_SECONDS = env.float("FORWARD_HOLD_QUIET_SECONDS", default=0.1)
FORWARD_HOLD_MAX_SECONDS = env.float("FORWARD_HOLD_MAX_SECONDS", default=1.0)
# The per-connection rate limiter lives in Redis: this URL, or the broker's when it is Redis.
RATE_LIMIT_REDIS_URL = env.str("RATE_LIMIT_REDIS_URL", default="")
# Seconds the limiter waits for Redis (connect or answer) before the send fails and is retried later.
RATE_LIMIT_REDIS_TIMEOUT = env.float("RATE_LIMIT_REDIS_TIMEOUT", default=2.0)
# Activation and rename backfills of audiences up to this many members are queued in the request
# itself; larger ones by a worker, chunk by chunk (connections/services/resync/backfill.py).
BACKFILL_INLINE_MAX = env.int("BACKFILL_INLINE_MAX", default=1000)
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=30)

# --- Visibility (SPEC section 13) ---
# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, the page does not exist (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Alert emails (connections.services.visibility.alerts): sent through EMAIL_URL to ALERT_EMAILS, once when a
# connection's problem starts and once when it ends. Thresholds in minutes.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="cioaudience@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_BACKING_OFF_MINUTES = env.int("ALERT_BACKING_OFF_MINUTES", default=15)
ALERT_BACKLOG_MINUTES = env.int("ALERT_BACKLOG_MINUTES", default=30)
ALERT_CHECK_INTERVAL_SECONDS = env.float("ALERT_CHECK_INTERVAL_SECONDS", default=60.0)
# Where people open the admin: the alert emails link to connection pages under it.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Firehose ---
FIREHOSE_MAX_BODY_BYTES = env.int("FIREHOSE_MAX_BODY_BYTES", default=5 * 1024 * 1024)
# Without a valid token only a module_registration_request is answered (about 150 bytes): a larger
# body is refused (401) before it is read, so anonymous requests cost next to nothing.
FIREHOSE_UNAUTHENTICATED_MAX_BYTES = env.int("FIREHOSE_UNAUTHENTICATED_MAX_BYTES", default=4096)
# Stored Firehose messages (replay protection: a replayed id within this window changes nothing)
# are pruned daily after this many days; 0 keeps them forever.
FIREHOSE_RETENTION_DAYS = env.int("FIREHOSE_RETENTION_DAYS", default=30)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(FIREHOSE_MAX_BODY_BYTES, 2_621_440)
# Where a checked Firehose message is applied: "worker" (the request stores it and answers; Celery
# workers apply stored messages, each person's in the order they were accepted, usually within a
# fraction of a second) or "request" (before the answer: a 200 means its changes are in the
# database). The same checks and 4xx answers either way. "worker" is the default because it answers
# a flood within mParticle's 100 ms and now also applies it faster than "request" can accept it (two
# appliers: 6,600-8,100 changes/s sustained on 2 cores busy with other work, where requests stalled
# near 6,800 accepted/s with 5 s answers; docs/architecture.md#where-a-firehose-message-is-applied).
FIREHOSE_APPLY = env.str("FIREHOSE_APPLY", default="worker")
if FIREHOSE_APPLY not in ("request", "worker"):
    raise ImproperlyConfigured(f"FIREHOSE_APPLY must be 'request' or 'worker', not {FIREHOSE_APPLY[:32]!r}.")
# With "worker": how many workers apply stored messages at once (each person's still in order,
# connections/firehose/shards.py); more only help with as many cores for them and PostgreSQL.
FIREHOSE_APPLIERS = env.int("FIREHOSE_APPLIERS", default=2)
if not 1 <= FIREHOSE_APPLIERS <= 8:
    raise ImproperlyConfigured(f"FIREHOSE_APPLIERS must be from 1 to 8, not {FIREHOSE_APPLIERS}.")
# An admin or erase_person erasure applies the Firehose messages accepted before it first, for at
# most this long; past it the erasure waits behind them for a worker (well within gunicorn's 30 s).
ERASURE_WAIT_SECONDS = env.float("ERASURE_WAIT_SECONDS", default=5.0)

# --- Celery ---
BROKER_DIR = Path(env.str("BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: a real broker that needs no server (see README).
    for sub in ("in", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "in"),
        "data_folder_out": str(BROKER_DIR / "in"),
        "data_folder_processed": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Celery's Django fix-up closes the database connection before and after every task unless this
# is set (one new PostgreSQL connection per task: 3.8 ms here, and a server process forked each
# time). Set beyond reach, it never does; cioaudience/celery.py applies CONN_MAX_AGE and the
# health check around each task instead, as Django does around each request.
CELERY_DB_REUSE_MAX = sys.maxsize
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Time limits, so that no task holds a worker for ever whatever it waits on. Every task is
# built to stop by itself well before: forward_connection and resync_connection hand the rest
# to a fresh task after a 60 s budget (connections/tasks.py), checked between claims/chunks.
# The soft limit leaves room for the last claim begun inside the budget: a v1 claim of 50
# profiles at 1 request/s is 50 s, plus request timeouts (CUSTOMERIO_TIMEOUT, 10 s); a v2 claim
# of 500 profiles is one to a few batches. Reaching it raises SoftTimeLimitExceeded inside the
# task, whose except-branch gives the claimed rows back at once (the sweep sends them). The
# hard limit (process killed, rows back when their lease ends) is the last resort, a minute later.
# Enforced by the prefork pool (the deployed one); the threads pool cannot interrupt a task.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=CELERY_TASK_SOFT_TIME_LIMIT + 60)
# Publishing happens inside web requests (after commit): fail fast when the broker is down,
# since the outbox sweep delivers anyway.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

CELERY_BEAT_SCHEDULE = {
    "sweep-outbox": {"task": "connections.tasks.sweep", "schedule": SWEEP_INTERVAL_SECONDS},
    # Daily, at a quiet hour: forwarding-log rows older than DELIVERY_RETENTION_DAYS (0: kept forever).
    # /metrics: count the settled forwarding-log rows into the running totals (connections.services.visibility.tallies).
    "check-alerts": {"task": "connections.tasks.check_alerts", "schedule": ALERT_CHECK_INTERVAL_SECONDS},
    "advance-delivery-tallies": {"task": "connections.tasks.advance_delivery_tallies", "schedule": 60.0},
    "prune-deliveries": {"task": "connections.tasks.prune_deliveries_task", "schedule": crontab(hour=3, minute=30)},
    # Daily: the batch log's monthly partitions, made two months ahead (PostgreSQL; a month without
    # one still takes writes, into the DEFAULT partition).
    "make-batch-log-partitions": {
        "task": "connections.tasks.make_batch_log_partitions",
        "schedule": crontab(hour=3, minute=15),
    },
    # Daily: stored Firehose messages older than FIREHOSE_RETENTION_DAYS (the replay-protection window).
    "prune-firehose-messages": {
        "task": "connections.tasks.prune_firehose_messages_task",
        "schedule": crontab(hour=3, minute=45),
    },
}
