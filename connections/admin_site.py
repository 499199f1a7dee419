"""The admin site: Django's, with an overview of every connection on its home page above the app list.

Its login asks for a two-factor code too (connections/login.py); with ADMIN_REQUIRE_2FA on, a
session that was not verified by a code does not reach the admin (as django_otp's OTPAdminSite).

Outside the `connections.admin` package on purpose: Django imports this class while it sets up
`admin.site`, before the package's modules register their models on that site.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from connections.login import LoginForm
from connections.services.visibility import overview


class CioAdminSite(admin.AdminSite):
    site_header = "cioaudience"
    site_title = "cioaudience"
    index_title = _("Customer.io audience forwarding")
    index_template = "admin/cio_index.html"
    login_form = LoginForm
    login_template = "admin/cio_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.ADMIN_REQUIRE_2FA or request.user.is_verified()  # type: ignore[union-attr]

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:  # type: ignore[type-arg]
        user = request.user
        context = {
            "overview": overview.build(),
            # Log viewers read the log, not the connection pages: their names are not links for them.
            "can_view_connections": user.has_perm("connections.view_connection"),
            "can_view_log": user.has_perm("connections.view_delivery"),
            "can_view_audiences": user.has_perm("connections.view_audience"),
            "can_view_erasures": user.has_perm("connections.view_erasurerecord"),
            **(extra_context or {}),
        }
        return super().index(request, context)
