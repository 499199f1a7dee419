"""The API key field is a password input: typed unseen, never filled in by the page (SPEC §8)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from connections.models import Connection
from tests.support.admin import admin_url, changeform_data
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

API_KEY = "sk-live-Zt5Hq8Lm3Vn1"


class Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.by_name: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name"):
            self.by_name[str(fields["name"])] = fields


def api_key_input(html: str) -> dict[str, str | None]:
    parser = Inputs()
    parser.feed(html)
    assert "api_key" in parser.by_name, "the page has an api_key input"
    return parser.by_name["api_key"]


def assert_password_input_without_value(html: str) -> None:
    field = api_key_input(html)
    assert field["type"] == "password"
    assert not field.get("value"), f"the key input must render empty, got value={field.get('value')!r}"
    assert field.get("autocomplete") == "new-password", "browsers must not fill in a saved password"


def test_the_add_page_asks_for_the_key_in_a_password_input(client, marketer):
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "add"))

    assert response.status_code == 200
    assert_password_input_without_value(response.content.decode())


def test_the_change_page_has_an_empty_password_input_for_a_stored_key(client, marketer):
    connection = ConnectionFactory(api_key=API_KEY)
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "change", connection.pk))

    assert response.status_code == 200
    assert_password_input_without_value(response.content.decode())


def test_a_form_shown_again_after_an_error_does_not_fill_the_typed_key_in(client, marketer):
    connection = ConnectionFactory(api_key=API_KEY)
    client.force_login(marketer)
    url = admin_url(Connection, "change", connection.pk)
    data = changeform_data(client.get(url)) | {"api_key": "sk-live-typed-9876", "rate_limit": "not a number"}

    response = client.post(url, data)

    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert_password_input_without_value(response.content.decode())
