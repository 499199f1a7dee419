"""Every URL of the admin site, enumerated from the site itself, made concrete with real object ids."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver

# Query strings for the URLs that mean nothing without one.
QUERIES = {"autocomplete": "?app_label=connections&model_name=subscription&field_name=audience&term=a"}


@dataclass(frozen=True)
class Route:
    key: str  # the URL name, or a name for the unnamed ones (see `routes`)
    pattern: str  # relative to the admin site's root
    model: type | None


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str | None]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.name


def routes() -> list[Route]:
    """Every URL pattern of `admin.site` (each ModelAdmin's `get_urls()` included).

    Unnamed ones get a name: `<app>_<model>_object` for Django's /<id>/ shortcut to the change
    page, `app_list <app>` for each app's index, `catch_all` for the final catch-all.
    """
    models = {f"{m._meta.app_label}/{m._meta.model_name}/": m for m in admin.site._registry}
    found = []
    for pattern, name in walk(admin.site.get_urls()):
        model = next((m for p, m in models.items() if pattern.startswith(p)), None)
        if app_list := re.fullmatch(r"\^\(\?P<app_label>([\w|]+)\)/\$", pattern):
            found += [Route(f"app_list {label}", f"{label}/", None) for label in app_list.group(1).split("|")]
        elif pattern == "(?P<url>.*)$":
            found.append(Route("catch_all", "no-such-page/", None))
        elif name is None and model is not None and pattern.endswith("<path:object_id>/"):
            found.append(Route(f"{model._meta.app_label}_{model._meta.model_name}_object", pattern, model))
        else:
            assert name, f"an unnamed admin URL the tests do not know: {pattern}"
            found.append(Route(name, pattern, model))
    return found


def model_admin_url_names() -> set[str]:
    return {p.name for model_admin in admin.site._registry.values() for p in model_admin.get_urls() if p.name}


def url_of(route: Route, objects: dict[str, Any]) -> str:
    """The route's URL, with the id of `objects[<app_label.model_name>]` (`view_on_site`: the profile's)."""
    url = "/admin/" + route.pattern
    if route.model is not None and "<" in url:
        obj = objects[route.model._meta.label_lower]
        url = url.replace("<path:object_id>", str(obj.pk)).replace("<id>", str(obj.pk)).replace("<int:pk>", str(obj.pk))
    if "<path:content_type_id>" in url:
        profile = objects["connections.profile"]
        url = url.replace("<path:content_type_id>", str(ContentType.objects.get_for_model(profile).pk))
        url = url.replace("<path:object_id>", str(profile.pk))
    assert "<" not in url and "(" not in url, url
    return url + QUERIES.get(route.key, "")


def login_rows(user: Any) -> dict[str, Any]:
    """A row of each model the login apps add to the admin (django-axes' records, a django-otp device of `user`)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    attempt = {"user_agent": "test", "http_accept": "*/*", "path_info": "/admin/login/", "attempt_time": timezone.now()}
    return {
        "axes.accessattempt": AccessAttempt.objects.create(
            **attempt, get_data="", post_data="", failures_since_start=1
        ),
        "axes.accesslog": AccessLog.objects.create(**attempt),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**attempt),
        "otp_totp.totpdevice": TOTPDevice.objects.create(user=user, name="phone"),
    }
