"""Settings for the test suite: the product's settings with test keys and a file-backed SQLite default.

With DATABASE_URL and CELERY_BROKER_URL set (as .ci/run does) the suite runs on PostgreSQL and Redis.
"""

import os

from cryptography.fernet import Fernet

# Test-only secrets, made fresh for each run and inherited by worker subprocesses.
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("ENCRYPTION_KEYS", Fernet.generate_key().decode())
# Nothing in the suite may reach the real Customer.io: tests point these at the stand-in, and
# anything that forgets to gets "connection refused" from the discard port.
os.environ.setdefault("CUSTOMERIO_US_URL", "http://127.0.0.1:9")
os.environ.setdefault("CUSTOMERIO_EU_URL", "http://127.0.0.1:9")
os.environ.setdefault("CUSTOMERIO_APP_US_URL", "http://127.0.0.1:9")
os.environ.setdefault("CUSTOMERIO_APP_EU_URL", "http://127.0.0.1:9")
os.environ.setdefault("BROKER_DIR", f"/tmp/cioaudience-test-broker-{os.getpid()}")

from cioaudience.settings import *  # noqa: F403
from cioaudience.settings import DATABASES, STATIC_ROOT, VAR_DIR

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker subprocesses can open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
