"""Helpers for driving the admin as a browser would: URLs, and the POST data of a change form."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
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


def page_text(response) -> str:  # type: ignore[no-untyped-def]
    """The page's visible text, tags removed and spaces collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


class _ClassTexts(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, css_class: str) -> None:
        super().__init__()
        self.css_class = css_class
        self.open: list[tuple[str, list[str] | None]] = []  # each open tag, with its text when it has the class
        self.found: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        collected: list[str] | None = [] if self.css_class in classes else None
        if collected is not None:
            self.found.append(collected)
        self.open.append((tag, collected))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _tag, collected in self.open:
            if collected is not None:
                collected.append(data)


def texts_of(response, css_class: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The visible text of each element of the page with `css_class`, spaces collapsed."""
    parser = _ClassTexts(css_class)
    parser.feed(response.content.decode())
    return [re.sub(r"\s+", " ", "".join(parts)).strip() for parts in parser.found]
