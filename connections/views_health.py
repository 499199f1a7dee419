"""`/healthz`: is this instance able to work? For load balancers, orchestrators and uptime checks.

Checks the database (`SELECT 1`) and the broker (one short connection attempt). Answers 200
`{"status": "ok", "database": "ok", "broker": "ok"}`, or 503 naming what failed. No login,
no redirect to HTTPS (SECURE_REDIRECT_EXEMPT), nothing secret in the body: the broker URL
can hold a password, so failures are named, not quoted.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from kombu.utils.url import maybe_sanitize_url, url_to_parts

from cioaudience.celery import app

log = logging.getLogger("cioaudience.health")

BROKER_TIMEOUT_SECONDS = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    with app.connection_for_write(
        connect_timeout=BROKER_TIMEOUT_SECONDS,
        transport_options={
            "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
            "socket_timeout": BROKER_TIMEOUT_SECONDS,
        },
    ) as broker:
        # max_retries=0: one attempt, no backoff sleeps; a health check must answer quickly.
        broker.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)


CHECKS = {"database": check_database, "broker": check_broker}


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure is the answer: reported as 503 and logged
            results[name] = "unavailable"
            log.warning("healthz check=%s failed error_type=%s error=%s", name, type(error).__name__, _safe(error))
        else:
            results[name] = "ok"
    healthy = all(value == "ok" for value in results.values())
    body = {"status": "ok" if healthy else "unavailable", **results}
    return JsonResponse(body, status=200 if healthy else 503)


def _safe(error: Exception) -> str:
    """The error's text with the broker password masked, in case a transport quotes its URL."""
    text = str(error)
    url = app.conf.broker_write_url or ""
    if not url:
        return text
    text = text.replace(url, maybe_sanitize_url(url))
    password = url_to_parts(url).password if "://" in url else None
    return text.replace(password, "**") if password else text
