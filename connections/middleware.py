"""Request middleware: `/healthz` for probes by IP, and dates in each person's own time zone.

HealthzBeforeHostCheckMiddleware: load balancers and orchestrators probe an instance by its
IP address, which is not (and should not be) in ALLOWED_HOSTS. Django validates the Host
header when something first calls `request.get_host()` (CommonMiddleware does, for every
request), so this middleware, placed before it, answers exactly `/healthz` itself; every
other path still goes through host validation and gets 400 for an unknown host.

BrowserTimezoneMiddleware: the admin pages set a cookie with the browser's IANA time zone (see
templates/admin/base_site.html); this middleware activates it for the request, so that
Django's date filters, `timezone.localtime` and the date list filters use it. Without the
cookie, or with a name that is not a known zone, TIME_ZONE applies.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import cache

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from connections.views_health import healthz

COOKIE = "cioaudience_tz"
HEALTHZ_PATH = "/healthz"


class HealthzBeforeHostCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTHZ_PATH:
            # The view never reads the Host header, answers only GET/HEAD and says nothing secret.
            return healthz(request)
        return self.get_response(request)


@cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class BrowserTimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = request.COOKIES.get(COOKIE, "")
        if name in known_zones():
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
