"""Connections: Customer.io workspaces. The API key is write-only and never decrypted to render a page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from connections.admin.common import PlainHelpTextForm, summarized_deleted_objects
from connections.models import Connection
from connections.services import connection_state, credentials


class ConnectionForm(PlainHelpTextForm):
    # Not the model field: the stored key (plaintext or ciphertext) never enters the form,
    # its initial data or its HTML. Blank on edit keeps the stored key.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = Connection
        # `exclude`, not `fields`: the admin passes its fieldsets as `fields`, and only an
        # exclusion keeps the model field out of the form's initial data and out of
        # construct_instance (which would otherwise write a blank key over the stored one).
        exclude = ("api_key",)

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        field = self.fields["api_key"]
        if self.instance.pk is None:
            field.required = True
            field.help_text = _(
                "The Track API key, from Customer.io's API credentials page. Write-only: "
                "it is stored encrypted and never shown again."
            )
        else:
            field.help_text = _(
                "Write-only: the stored key (ending %(hint)s) is never shown. "
                "Leave blank to keep it; enter a new key to replace it."
            ) % {"hint": self.instance.masked_api_key or "—"}

    def _post_clean(self) -> None:
        super()._post_clean()
        if key := self.cleaned_data.get("api_key"):
            self.instance.api_key = key


WORKSPACE = (
    _("Customer.io workspace"),
    {
        "fields": ("name", "site_id", "api_key", "region"),
        "description": _(
            "The workspace's Track API credentials (Customer.io: Settings, API credentials) and its data center."
        ),
    },
)
FORWARDING = (
    _("Forwarding"),
    {
        "fields": ("one_attribute_per_audience", "transport", "rate_limit"),
        "description": _(
            "How membership is written to Customer.io. Changing the attribute mode applies to later "
            "updates only: attributes already written are not cleaned up."
        ),
    },
)
MPARTICLE = (
    _("mParticle"),
    {
        "fields": ("connection_key",),
        "description": _("Copy the connection key into the mParticle output's Connection Key setting."),
    },
)
HEALTH = (
    _("Health"),
    {
        "fields": ("state", "last_success_at", "last_error_at", "last_error"),
        "description": _(
            "Faulted means Customer.io rejected the credentials: forwards wait (nothing is dropped). "
            'Fix the API key (check it with the "Test credentials" action), then use the "Resume" action '
            "on the list of connections."
        ),
    },
)
HISTORY = (_("History"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)})


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = (
        "name",
        "site_id",
        "region",
        "transport",
        "one_attribute_per_audience",
        "state",
        "api_key_hint",
        "last_success_at",
        "last_error_at",
    )
    list_filter = ("state", "region", "transport")
    search_fields = ("name", "site_id")
    actions = ("test_credentials", "resume_connections")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        # The ciphertext is not even loaded: no page needs the key (a new one is written
        # through the form, and a deferred column is left alone by save()).
        return super().get_queryset(request).defer("api_key")

    def get_fieldsets(self, request: HttpRequest, obj: Connection | None = None):  # type: ignore[no-untyped-def]
        if obj is None:
            return (WORKSPACE, FORWARDING)
        return (WORKSPACE, FORWARDING, MPARTICLE, HEALTH, HISTORY)

    def get_readonly_fields(self, request: HttpRequest, obj: Connection | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("connection_key", "state", "last_error", "last_success_at", "last_error_at", "created_at", "updated_at")

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        return summarized_deleted_objects(self, objs, request)

    @admin.display(description=_("API key"))
    def api_key_hint(self, obj: Connection) -> str:
        return obj.masked_api_key

    @admin.action(description=_("Test credentials of selected connections"), permissions=["change"])
    def test_credentials(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            check = credentials.verify_credentials(connection)
            if check.valid and not check.region_mismatch:
                level = messages.SUCCESS
            elif check.valid:
                level = messages.WARNING
            else:
                level = messages.ERROR
            self.message_user(request, f"{connection.name}: {check.message}", level)

    @admin.action(description=_("Resume selected faulted connections"), permissions=["change"])
    def resume_connections(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        resumed = sum(connection_state.resume(c) for c in queryset.filter(state=Connection.State.FAULTED))
        if resumed:
            self.message_user(
                request,
                ngettext(
                    "Resumed %(count)d connection: its waiting forwards are being sent.",
                    "Resumed %(count)d connections: their waiting forwards are being sent.",
                    resumed,
                )
                % {"count": resumed},
                messages.SUCCESS,
            )
        else:
            self.message_user(request, _("None of the selected connections was faulted."), messages.WARNING)
