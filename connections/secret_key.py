"""The secret key, required where it is used: the web process and `check --deploy`.

Settings do not refuse to load without one, so commands that sign nothing (`makemigrations
--check`, `migrate`) run with no secret at hand. The WSGI application refuses to start without it
(gunicorn, `runserver`), and `manage.py check --deploy` reports it as an error.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

MIN_LENGTH = 50
MISSING = f"SECRET_KEY must be set (at least {MIN_LENGTH} characters) when DEBUG is off."


def problem() -> str | None:
    """Why the configured secret key will not do, or None."""
    if settings.DEBUG:
        return None
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django's own refusal of an empty key
        key = ""
    return MISSING if len(key) < MIN_LENGTH else None


def require() -> None:
    """Refuse to go on without a usable secret key (the web process, before it serves anything)."""
    if reason := problem():
        raise ImproperlyConfigured(f"{reason} Settings come from the environment or .env (see .env.example).")


@checks.register(checks.Tags.security, deploy=True)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    reason = problem()
    return [checks.Error(reason, id="cioaudience.E001")] if reason else []
