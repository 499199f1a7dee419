"""The connection form: write-only API keys, the options of SPEC section 11, and its fieldsets."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from connections.admin.common import PlainHelpTextForm
from connections.models import Connection

UPDATE_ONLY_NEEDS_V2 = _(
    'Update existing people only works with the v2 batch transport: it is Customer.io\'s "_update" flag on '
    "v2 identify actions, which this product sends only there. With v1 every identify would create the "
    "people Customer.io does not have. Choose the v2 batch transport, or turn this option off."
)


class SecretInput(forms.PasswordInput):
    """A password input that never renders its value, with an optional notice beside it."""

    notice = ""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})

    def render(self, name, value, attrs=None, renderer=None):  # type: ignore[no-untyped-def]
        if not self.notice:
            return super().render(name, value, attrs, renderer)
        attrs = dict(attrs or {})
        notice_id = f"{attrs.get('id') or f'id_{name}'}_notice"
        # Read out with the input, before its help text.
        attrs["aria-describedby"] = f"{notice_id} {attrs.get('aria-describedby', '')}".strip()
        html = super().render(name, value, attrs, renderer)
        return html + format_html('<p class="secret-notice cio-warn" id="{}">{}</p>', notice_id, self.notice)


def _secret_input() -> forms.CharField:
    return forms.CharField(required=False, strip=True, widget=SecretInput())


class ConnectionForm(PlainHelpTextForm):
    # Not the model fields: a stored key (plaintext or ciphertext) never enters the form, its
    # initial data or its HTML. Blank on edit keeps the stored key.
    api_key = _secret_input()
    app_api_key = _secret_input()

    class Meta:
        model = Connection
        # `exclude`, not `fields`: the admin passes its fieldsets as `fields`, and only an
        # exclusion keeps the model fields out of the form's initial data and out of
        # construct_instance (which would otherwise write a blank key over the stored one).
        exclude = Connection.SECRET_FIELDS

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        api_key, app_api_key = self.fields["api_key"], self.fields["app_api_key"]
        api_key.label, app_api_key.label = _("API key"), _("App API key")
        if self.instance.pk is None:
            api_key.required = True
            api_key.help_text = _(
                "The Track API key, from Customer.io's API credentials page. Write-only: "
                "it is stored encrypted and never shown again."
            )
            app_api_key.help_text = _(
                "Optional. An App API key (Customer.io: API credentials, App API keys), to create manual "
                "segments from the admin. Write-only: stored encrypted and never shown again."
            )
            return
        api_key.help_text = _(
            "Write-only: the stored key (ending %(hint)s) is never shown. "
            "Leave blank to keep it; enter a new key to replace it."
        ) % {"hint": self.instance.masked_api_key or "—"}
        if self.instance.app_api_key_last4:
            app_api_key.help_text = _(
                "Optional, write-only: the stored key (ending %(hint)s) is never shown. Leave blank to keep it; "
                "enter a new key to replace it."
            ) % {"hint": self.instance.masked_app_api_key}
        else:
            app_api_key.help_text = _(
                "Optional. An App API key, to create manual segments from the admin. None is stored."
            )

    def clean(self) -> dict:  # type: ignore[type-arg]
        cleaned = super().clean()
        if cleaned.get("update_existing_only") and cleaned.get("transport") == Connection.Transport.V1:
            self.add_error("update_existing_only", ValidationError(UPDATE_ONLY_NEEDS_V2, code="update_only_needs_v2"))
        return cleaned

    def _post_clean(self) -> None:
        super()._post_clean()
        for name in Connection.SECRET_FIELDS:
            if key := self.cleaned_data.get(name):
                setattr(self.instance, name, key)
        if self._errors:
            self._ask_to_reenter_secrets()

    def _ask_to_reenter_secrets(self) -> None:
        """The form comes back with errors and its key inputs empty: say so beside each key that was typed."""
        for name in Connection.SECRET_FIELDS:
            if not self.data.get(self.add_prefix(name), "").strip():
                continue  # nothing typed, nothing lost
            field = self.fields[name]
            notice = _("Re-enter the %(label)s: for safety it is not sent back to the browser.") % {
                "label": field.label
            }
            if self.instance.pk is not None and getattr(self.instance, f"{name}_last4"):
                notice += " " + _("Left empty, the stored key (ending …%(last4)s) is kept.") % {
                    "last4": getattr(self.instance, f"{name}_last4")
                }
            field.widget.notice = notice


WORKSPACE = (
    _("Customer.io workspace"),
    {
        "fields": ("name", "site_id", "api_key", "region", "app_api_key"),
        "description": _(
            "The workspace's Track API credentials (Customer.io: Settings, API credentials) and its data center. "
            "The App API key is optional: with it, manual segments can be created from a subscription."
        ),
    },
)
FORWARDING = (
    _("Forwarding"),
    {
        "fields": ("one_attribute_per_audience", "segment_membership_always", "transport", "rate_limit"),
        "description": _(
            "How membership is written to Customer.io. Changing the attribute mode applies to later "
            "updates only: attributes already written are not cleaned up."
        ),
    },
)
IDENTIFIERS = (
    _("People"),
    {
        "fields": ("identify_by", "update_existing_only", "erasure"),
        "description": _(
            "How people are named in Customer.io, whether new people may be created there (Customer.io bills "
            "per person), and what Customer.io is told when a person is erased here."
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
HISTORY = (_("History"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)})
