"""The "are you sure?" pages of costly or lasting actions: one way to render them, one template they extend.

Every confirmation page extends `admin/connections/action_confirmation.html`, which ends with the
form that confirms: it posts `post=yes` back, with the list action and the selected rows when
the page came from a list (`action`), or to the button's own URL when it came from an object's page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.db import models
from django.http import HttpRequest
from django.template.response import TemplateResponse


def confirmed(request: HttpRequest) -> bool:
    """Whether the request is the confirmation's own POST (anything else only shows the page)."""
    return request.method == "POST" and request.POST.get("post") == "yes"


def confirmation_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    template: str,
    *,
    title: str,
    action: str | None = None,
    selected: Iterable[models.Model] = (),
    **context: Any,
) -> TemplateResponse:
    """The page that asks first; `action` and `selected`: the list action to post again, with its rows."""
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": model_admin.opts,
            "action": action,
            "selected_pks": [obj.pk for obj in selected] if action else [],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": model_admin.media,
            **context,
        },
    )
