"""Inbound tokens for the Firehose endpoint: superusers only. A new token is shown once, then only its hash is kept."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from connections.models import InboundToken
from connections.services.ingest import tokens


def _is_superuser(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_superuser


@admin.register(InboundToken)
class InboundTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix_hint", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name",)
    actions = ("revoke_tokens",)
    shown_once_template = "admin/connections/inboundtoken/token_created.html"

    # Nobody but a superuser sees or edits inbound tokens, whatever permissions they were given.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: InboundToken | None = None) -> bool:
        return _is_superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: InboundToken | None = None) -> bool:
        return _is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: InboundToken | None = None) -> bool:
        return _is_superuser(request)

    def get_fields(self, request: HttpRequest, obj: InboundToken | None = None) -> tuple[str, ...]:
        return ("name",) if obj is None else ("name", "prefix_hint", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: InboundToken | None = None) -> tuple[str, ...]:
        return () if obj is None else ("prefix_hint", "created_at", "last_used_at", "revoked_at")

    @admin.display(description=_("token starts with"), ordering="prefix")
    def prefix_hint(self, obj: InboundToken) -> str:
        return f"{obj.prefix}…" if obj.prefix else ""

    def save_model(self, request: HttpRequest, obj: InboundToken, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        # The secret lives on this object (an attribute, never saved) until response_add shows it.
        obj._issued_token = tokens.issue(obj)  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: InboundToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The token is rendered into this response and nowhere else: not into a message
        # (kept in a cookie or the session until shown), not into a redirect URL.
        token = obj.__dict__.pop("_issued_token")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Inbound token created"),
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "token": token,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.shown_once_template, context)

    @admin.action(description=_("Revoke selected tokens"), permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[InboundToken]) -> None:
        revoked = tokens.revoke(queryset)
        message = ngettext(
            "Revoked %(count)d token: requests using it are refused from now on.",
            "Revoked %(count)d tokens: requests using them are refused from now on.",
            revoked,
        )
        self.message_user(request, message % {"count": revoked}, messages.SUCCESS)
