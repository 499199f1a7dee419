"""`GET /metrics`: Prometheus text format, for a scraper holding `Authorization: Bearer <METRICS_TOKEN>`.

Off (404, as if there were no such page) while METRICS_TOKEN is unset; 401 for a request
without the right token. The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from connections.services.visibility import metrics


@sensitive_variables("header", "expected", "given")
def _authorized(request: HttpRequest, expected: str) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Not Found\n", status=404, content_type="text/plain")
    if not _authorized(request, token):
        response = HttpResponse(
            "401 Unauthorized: send 'Authorization: Bearer <METRICS_TOKEN>'.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The format the scraper asks for (Accept): OpenMetrics, or the classic text format by default.
    encode, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    return HttpResponse(encode(metrics.registry()), content_type=content_type)
