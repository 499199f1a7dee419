"""The home page and the connection list say how many deliveries failed, and call it a problem only when it is
one: a share of at least 10% and at least 5 failures in the last 24 hours (figures.FAILURES_ALARM)."""

from __future__ import annotations

import html
import re

import pytest
from django.utils import timezone

from connections.models import Connection
from tests.support.admin import admin_url, make_delivery
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def visible_text(response) -> str:  # type: ignore[no-untyped-def]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def with_deliveries(name: str, succeeded: int, failed: int):  # type: ignore[no-untyped-def]
    connection = ConnectionFactory(name=name, credentials_verified_at=timezone.now())
    for status in ["succeeded"] * succeeded + ["failed"] * failed:
        make_delivery(connection, status=status, http_status=200 if status == "succeeded" else 400)
    return connection


def test_one_failure_in_seven_is_a_count_not_an_alarm(client, marketer):
    with_deliveries("Calm workspace", succeeded=6, failed=1)
    client.force_login(marketer)

    response = client.get("/admin/")

    page = visible_text(response)
    assert "Every connection is working: nothing needs attention." in page
    assert "many failed" not in page
    assert re.search(r"Calm workspace Active 0 nothing waits never 1 of 7 ", page), page
    assert 'class="cio-warn"' in response.content.decode()  # shown, in amber, not red


def test_many_failures_are_listed_with_their_numbers(client, marketer):
    with_deliveries("Shaky workspace", succeeded=14, failed=6)
    with_deliveries("Broken workspace", succeeded=2, failed=8)
    client.force_login(marketer)

    response = client.get("/admin/")

    page = visible_text(response)
    assert "Shaky workspace had 6 of 20 delivery attempts fail in the last 24 hours (30%)." in page
    assert "Broken workspace had 8 of 10 delivery attempts fail in the last 24 hours (80%)." in page
    content = response.content.decode()
    shaky = content[content.index("<strong>Shaky workspace</strong>") - 60 :]
    broken = content[content.index("<strong>Broken workspace</strong>") - 60 :]
    assert 'class="cio-warn-item"' in shaky.split("<strong>")[0]
    assert 'class="cio-bad-item"' in broken.split("<strong>")[0]


def test_the_connection_list_colours_the_failure_rate_the_same_way(client, marketer):
    with_deliveries("Calm workspace", succeeded=6, failed=1)
    with_deliveries("Shaky workspace", succeeded=14, failed=6)
    with_deliveries("Clean workspace", succeeded=5, failed=0)
    client.force_login(marketer)

    content = client.get(admin_url(Connection, "changelist")).content.decode()

    shown = re.findall(r'<span class="cio-(\w+)" title="(\d+) of (\d+) delivery attempts[^"]*">([^<]+)</span>', content)
    assert sorted(shown) == [
        ("bad", "6", "20", "30.0 %"),
        ("good", "0", "5", "0.0 %"),
        ("warn", "1", "7", "14.3 %"),
    ]
