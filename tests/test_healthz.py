"""`/healthz`: database and broker, 200 or 503, no login, no HTTPS redirect, nothing secret."""

import pytest

from cioaudience.celery import app

pytestmark = pytest.mark.django_db

UNREACHABLE_BROKER = "redis://:hunter2-secret@127.0.0.1:1/0"  # port 1: connection refused at once


def test_it_answers_200_when_the_database_and_broker_are_up(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_answers_503_naming_the_broker_when_it_is_unreachable(client, monkeypatch, caplog):
    # app.conf, not Django's settings: the Celery app read CELERY_BROKER_URL at start-up.
    monkeypatch.setitem(app.conf, "broker_write_url", UNREACHABLE_BROKER)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unavailable"}
    assert "hunter2" not in response.content.decode() and "127.0.0.1:1" not in response.content.decode()
    assert "check=broker failed" in caplog.text and "hunter2" not in caplog.text


def test_it_needs_no_login_and_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/").status_code == 301  # everything else is


def test_it_only_answers_reads(client):
    assert client.post("/healthz").status_code == 405
