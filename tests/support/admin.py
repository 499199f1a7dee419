"""Helpers for driving the admin as a browser would: URLs, and the POST data of a change form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse
from django.utils import timezone

from connections.models import Delivery, Forward, InboundToken
from connections.services.ingest import tokens


def admin_url(model: type | Any, view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def make_delivery(connection, profile=None, **fields: Any) -> Delivery:
    fields.setdefault("status", Delivery.Status.SUCCEEDED)
    fields.setdefault("http_status", 200)
    fields.setdefault("finished_at", timezone.now())
    fields.setdefault("customer_id", profile.customer_id if profile else "")
    return Delivery.objects.create(connection=connection, profile=profile, **fields)


def make_forward(connection, profile, audience=None, reason: str = Forward.Reason.MEMBERSHIP) -> Forward:
    now = timezone.now()
    return Forward.objects.create(connection=connection, profile=profile, audience=audience, reason=reason, due_at=now)


def make_token(name: str = "mParticle") -> tuple[InboundToken, str]:
    return tokens.create_token(name)


def changeform_data(response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What the change form in `response` submits when saved as it is (inline rows included)."""
    context = response.context
    all_forms: list[forms.BaseForm] = [context["adminform"].form]
    for inline in context["inline_admin_formsets"]:
        all_forms.append(inline.formset.management_form)
        all_forms.extend(inline.formset.forms)
    data: dict[str, Any] = {}
    for form in all_forms:
        for bound in form:
            if bound.field.disabled:
                continue  # browsers do not submit disabled inputs
            value = bound.value()
            if isinstance(bound.field.widget, forms.CheckboxInput):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = value
    return data


def add_inline_row(data: dict[str, Any], prefix: str, **fields: Any) -> None:
    """Append a new row to the inline formset `prefix` in POST data built by `changeform_data`."""
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    for name, value in fields.items():
        data[f"{prefix}-{index}-{name}"] = value
    data[f"{prefix}-TOTAL_FORMS"] = index + 1
